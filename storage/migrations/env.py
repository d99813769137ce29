"""Alembic environment, driven only programmatically by `storage.migrate` (no alembic.ini).

`storage.migrate` hands over an open connection and the options in `config.attributes`:
`requested_lane` ('auto' | 'postgresql' | 'timescale') and `storage_settings` (a StorageSettings).
"""

from alembic import context

from storage.schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
