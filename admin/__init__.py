"""The admin API: the fleet's registry, labels, alert rules and alarms, behind keys with scopes.

`admin.app.create_app` builds the FastAPI app from one router module per resource (`admin/routes`);
a new capability (fine-tuning jobs, questions) is one more module there and one line in `ROUTERS`.
`admin.registry.FleetRegistry` is what the gate and the workers read (admission, rooms, label sets,
rules), injected by the composition root; they never import this package.
"""
