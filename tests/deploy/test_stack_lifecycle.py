"""`iotlm stack up|status|down` end to end, on a private stack.

The session `stack` fixture is shared by the whole suite, so these tests bring up their own
services in a separate state dir on free ports, and bring them down again.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from deploy.process import free_ports, port_is_open
from iotlm.settings import Settings, StackSettings

PORT_FIELDS = ("kafka_port", "kafka_controller_port", "kafka_tls_port", "postgres_port", "redis_port", "mqtt_port", "timescale_port")


@pytest.fixture
def private_settings() -> Settings:
    # Not pytest's tmp_path: that sits in a 0700 folder the `postgres` OS user cannot enter.
    state_dir = Path(tempfile.mkdtemp(prefix="iotlm-deploy-test-"))
    state_dir.chmod(0o755)
    ports = dict(zip(PORT_FIELDS, free_ports(len(PORT_FIELDS)), strict=True))
    yield Settings(state_dir=state_dir, stack=StackSettings(**ports, kafka_heap="512m"))
    shutil.rmtree(state_dir, ignore_errors=True)


def _iotlm(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "IOTLM_STATE_DIR": str(settings.state_dir), **settings.stack.environ()}
    return subprocess.run(
        [sys.executable, "-m", "iotlm", *args], env=env, capture_output=True, text=True, timeout=300,
    )


class TestStackCommands:
    def test_up_status_up_again_down(self, private_settings: Settings):
        first = _iotlm(private_settings, "stack", "up", "--json")
        assert first.returncode == 0, first.stderr
        assert sorted(json.loads(first.stdout)["started"]) == ["kafka", "mosquitto", "postgres", "redis"]

        status = _iotlm(private_settings, "stack", "status", "--json")
        assert status.returncode == 0, status.stderr
        by_name = {s["name"]: s for s in json.loads(status.stdout)}
        s = private_settings.stack
        expected = {"kafka": s.kafka_port, "postgres": s.postgres_port, "redis": s.redis_port, "mosquitto": s.mqtt_port}
        for name, port in expected.items():
            assert by_name[name]["healthy"], by_name[name]
            assert by_name[name]["address"] == f"127.0.0.1:{port}"
            assert psutil.pid_exists(by_name[name]["pid"])
        assert by_name["timescale"]["healthy"] is False  # optional, not started by default
        pids = {name: by_name[name]["pid"] for name in expected}

        logs = _iotlm(private_settings, "stack", "logs", "redis", "-n", "200")
        assert logs.returncode == 0 and "Ready to accept connections" in logs.stdout

        again = _iotlm(private_settings, "stack", "up", "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["started"] == []
        assert {s["name"]: s["pid"] for s in json.loads(again.stdout)["services"]} == pids

        down = _iotlm(private_settings, "stack", "down", "--json")
        assert down.returncode == 0, down.stderr
        assert sorted(json.loads(down.stdout)["stopped"]) == sorted(expected)
        for name, pid in pids.items():
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, name
        for port in expected.values():
            assert not port_is_open("127.0.0.1", port)
        assert not list((private_settings.state_dir / "run").glob("*.pid"))

        after = _iotlm(private_settings, "stack", "status", "--json")
        assert after.returncode == 1
        assert not any(s["healthy"] for s in json.loads(after.stdout))

    def test_unknown_service_is_a_clear_error(self, private_settings: Settings):
        result = _iotlm(private_settings, "stack", "up", "--service", "cassandra")
        assert result.returncode == 1
        assert "unknown service(s) cassandra" in result.stderr


class TestStartFailures:
    def test_port_taken_by_a_stranger_is_refused_and_left_alone(self, private_settings: Settings):
        from deploy.stack import Stack, StackError

        with socket.socket() as stranger:
            stranger.bind(("127.0.0.1", private_settings.stack.redis_port))
            stranger.listen()
            with pytest.raises(StackError, match="is taken by a program that is not a healthy redis"):
                Stack(private_settings).up(["redis"])
            assert Stack(private_settings).down() == []

    def test_crash_at_start_reports_the_log_tail_and_rolls_back(self, private_settings: Settings):
        from deploy.stack import Stack, StackError

        broken = private_settings.model_copy(
            update={"stack": private_settings.stack.model_copy(update={"kafka_heap": "lots"})}
        )
        with pytest.raises(StackError) as failure:
            Stack(broken).up(["redis", "kafka"])
        message = str(failure.value)
        assert "kafka exited during start-up" in message
        assert "Invalid maximum heap size" in message  # the JVM's own words, from logs/kafka.log
        # All or nothing: the redis this call started is stopped again.
        assert not port_is_open("127.0.0.1", broken.stack.redis_port)
        assert not list((broken.state_dir / "run").glob("*.pid"))


    def test_our_process_on_a_port_the_settings_moved_is_a_clear_error_not_a_wait(self, private_settings: Settings):
        from deploy.stack import Stack, StackError

        assert Stack(private_settings).up(["redis"]) == ["redis"]
        moved = private_settings.model_copy(
            update={"stack": private_settings.stack.model_copy(update={"redis_port": free_ports(1)[0]})}
        )
        try:
            with pytest.raises(StackError, match=f"listens on 127.0.0.1:{private_settings.stack.redis_port}, not on"):
                Stack(moved).up(["redis"])
            assert Stack(private_settings).status(["redis"])[0].healthy  # left running, for its holders
        finally:
            assert Stack(private_settings).down() == ["redis"]


class TestSessionStack:
    def test_the_test_session_shares_no_port_with_the_developer_stack(self, settings: Settings):
        developer = Settings().stack
        assert settings.state_dir != Settings().state_dir
        shifts = {getattr(settings.stack, field) - getattr(developer, field) for field in PORT_FIELDS}
        assert len(shifts) == 1 and shifts.pop() > 0  # every port moved by the same offset
        ports = [getattr(s, field) for s in (developer, settings.stack) for field in PORT_FIELDS]
        assert len(set(ports)) == len(ports)

    def test_settings_env_gives_a_child_process_the_same_stack(self, settings: Settings, settings_env: dict):
        child = subprocess.run(
            [sys.executable, "-c", "from iotlm.settings import Settings; print(Settings().model_dump_json())"],
            env=settings_env, capture_output=True, text=True, timeout=60, check=True,
        )
        seen = json.loads(child.stdout)
        assert (seen["state_dir"], seen["stack"]) == (str(settings.state_dir), settings.stack.model_dump(mode="json"))


class TestDown:
    def test_down_stops_by_pid_file_even_after_the_settings_moved_the_port(self, private_settings: Settings):
        from deploy.stack import Stack

        assert Stack(private_settings).up(["redis"]) == ["redis"]
        moved = private_settings.model_copy(
            update={"stack": private_settings.stack.model_copy(update={"redis_port": free_ports(1)[0]})}
        )
        assert Stack(moved).down() == ["redis"]
        assert not port_is_open("127.0.0.1", private_settings.stack.redis_port)


class TestPostgresDataPlacement:
    def test_state_dir_the_postgres_user_cannot_enter_falls_back_to_a_private_temp_dir(self):
        from deploy.services import PostgresServer

        locked = Path(tempfile.mkdtemp(prefix="iotlm-deploy-test-"))  # mode 0700, like /root
        try:
            server = PostgresServer(Settings(state_dir=locked / "state"))
            assert server.data_root.name.startswith("iotlm-postgres-")
            locked.chmod(0o755)
            assert server.data_root == server.home == locked / "state" / "postgres"
        finally:
            shutil.rmtree(locked)


class TestLeases:
    def test_last_holder_out_stops_what_leases_started(self, private_settings: Settings):
        from deploy.stack import Stack

        with Stack(private_settings).leased(["redis"]) as first:
            assert first.status(["redis"])[0].healthy
            with Stack(private_settings).leased(["redis"]) as second:  # another test session, say
                assert second.status(["redis"])[0].healthy
            assert first.status(["redis"])[0].healthy  # the first holder still has it
        assert not port_is_open("127.0.0.1", private_settings.stack.redis_port)

    def test_a_dead_holders_lease_does_not_keep_the_stack_up(self, private_settings: Settings):
        from deploy.stack import Stack

        leases = private_settings.state_dir / "run" / "leases"
        leases.mkdir(parents=True)
        (leases / "999999.deadbeef").write_text(json.dumps({"pid": 999_999_999, "started_at": 0}))
        with Stack(private_settings).leased(["redis"]):
            pass
        assert not port_is_open("127.0.0.1", private_settings.stack.redis_port)
        assert list(leases.iterdir()) == []
