"""Redis ACL users on the real server: no anonymous access, the promoted-model key is the API's
alone, dashboards only read (deploy/services.py RedisServer has the rules)."""

from __future__ import annotations

import uuid

import pytest

from iotlm.credentials import redis_client


@pytest.fixture
def keys(settings, stack):
    """A key prefix and model key of this test's own, deleted afterwards."""
    tag = uuid.uuid4().hex[:8]
    prefix, model_key = f"test:{tag}", f"test:{tag}:model"
    yield prefix, model_key
    admin = redis_client(settings, "admin")
    for key in admin.scan_iter(f"{prefix}:*"):
        admin.delete(key)
    admin.close()


def test_no_password_no_redis(stack, settings):
    import redis
    from redis.exceptions import AuthenticationError, ResponseError

    anonymous = redis.Redis(host=settings.stack.host, port=settings.stack.redis_port, socket_timeout=5)
    with pytest.raises((AuthenticationError, ResponseError), match="(?i)noauth|auth"):
        anonymous.ping()
    wrong = redis.Redis(host=settings.stack.host, port=settings.stack.redis_port, socket_timeout=5,
                        username="api", password="not-the-password")
    with pytest.raises(AuthenticationError):
        wrong.ping()
    assert redis_client(settings, "api").ping()


def test_only_the_api_changes_the_promoted_model(settings, keys):
    from redis.exceptions import NoPermissionError

    prefix, model_key = keys
    api, worker, dashboards = (redis_client(settings, who) for who in ("api", "worker", "dashboards"))
    api.set(model_key, "models/promoted-v2")
    for other in (worker, dashboards):
        with pytest.raises(NoPermissionError):
            other.set(model_key, "/tmp/evil")
        with pytest.raises(NoPermissionError):
            other.delete(model_key)
    assert worker.get(model_key) == "models/promoted-v2"  # the workers still read it
    # the workers write live state; dashboards read it and write nothing
    worker.hset(f"{prefix}:device:d1", mapping={"activity": "walking"})
    worker.xadd(f"{prefix}:alerts", {"alert": "{}"})
    assert dashboards.hgetall(f"{prefix}:device:d1") == {"activity": "walking"}
    with pytest.raises(NoPermissionError):
        dashboards.hset(f"{prefix}:device:d1", mapping={"activity": "lying"})
    with pytest.raises(NoPermissionError):  # no server administration for anyone but admin
        worker.config_set("appendonly", "yes")
    with pytest.raises(NoPermissionError):
        api.flushall()
