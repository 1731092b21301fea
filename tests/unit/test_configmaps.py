"""ConfigMap/Secret validation, the atomic writer's layout and updates, and how a pod's env and volumes
are built from ConfigMaps and Secrets (with an in-memory object source)."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from minik8s.api import config as cfg
from minik8s.api import kinds as k
from minik8s.api.types import Pod
from minik8s.api.validation import validate_pod
from minik8s.kubelet.atomic_writer import DATA_DIR_NAME, FileProjection, PayloadError, write_payload
from minik8s.kubelet.configrefs import ConfigError, references
from minik8s.kubelet.spec import environment, volume_binds
from minik8s.kubelet.volumes import prepare_volumes


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def causes_of(kind: str, obj: dict[str, Any]) -> list[tuple[str, str]]:
    info = k.lookup(kind)
    return info.validate(info.model.model_validate({"metadata": {"name": "x"}, **obj}))


# --- validation --------------------------------------------------------------------------------

def test_kinds_are_registered_with_kubectl_names_and_columns() -> None:
    assert k.lookup("cm").kind == "ConfigMap" and k.lookup("sa").kind == "ServiceAccount"
    assert k.lookup("secrets").kind == "Secret" and k.lookup("secret").short_names == ()
    assert [c.name for c in k.lookup("cm").columns] == ["NAME", "DATA", "AGE"]
    assert [c.name for c in k.lookup("secret").columns] == ["NAME", "TYPE", "DATA", "AGE"]
    assert [c.name for c in k.lookup("sa").columns] == ["NAME", "SECRETS", "AGE"]
    row = [c.get({"metadata": {"name": "s"}, "data": {"a": "", "b": ""}}) for c in k.lookup("secret").columns[:3]]
    assert row == ["s", "Opaque", "2"]
    assert k.lookup("cm").columns[1].get({"data": {"a": "1"}, "binaryData": {"b": "AA=="}}) == "2"


@pytest.mark.parametrize("key", ["a b", "..x", ".", "..", "k" * 254, "a/b"])
def test_configmap_keys_are_checked_like_kubernetes(key: str) -> None:
    causes = causes_of("ConfigMap", {"data": {key: "v"}})
    assert causes and causes[0][0] == f"data[{key}]"


def test_configmap_good_keys_and_binary_data() -> None:
    assert causes_of("ConfigMap", {"data": {"app.properties": "x", "KEY_1": "y", "-a.b_c": "z"},
                                   "binaryData": {"bin": b64("\x00\x01")}}) == []
    assert causes_of("ConfigMap", {"binaryData": {"bin": "not base64!"}})[0][0] == "binaryData[bin]"
    dup = causes_of("ConfigMap", {"data": {"a": "1"}, "binaryData": {"a": b64("1")}})
    assert dup == [("binaryData[a]", 'Invalid value: "a": duplicate of key present in data')]
    too_big = causes_of("ConfigMap", {"data": {"a": "x" * (cfg.MAX_DATA_BYTES + 1)}})
    assert too_big[0][0] == "data" and "Too long" in too_big[0][1]


def test_secret_bad_base64_names_the_key_and_redacts_the_value() -> None:
    causes = causes_of("Secret", {"data": {"good": b64("ok"), "password": "hunter2"}})
    assert len(causes) == 1 and causes[0][0] == "data[password]"
    assert "base64" in causes[0][1] and "hunter2" not in causes[0][1]


def test_secret_string_data_is_folded_into_data_and_never_kept() -> None:
    secret = cfg.Secret.model_validate({"metadata": {"name": "s"}, "data": {"a": b64("old"), "b": b64("keep")},
                                        "stringData": {"a": "new", "c": "plain"}})
    wire = secret.to_dict()
    assert "stringData" not in wire and wire["type"] == "Opaque"
    assert {key: base64.b64decode(v).decode() for key, v in wire["data"].items()} == \
        {"a": "new", "b": "keep", "c": "plain"}


@pytest.mark.parametrize(("type_", "data", "expected"), [
    (cfg.SECRET_TLS, {"tls.crt": "x"}, ["data[tls.key]"]),
    (cfg.SECRET_TLS, {}, ["data[tls.key]", "data[tls.crt]"]),
    (cfg.SECRET_DOCKERCONFIGJSON, {}, ["data[.dockerconfigjson]"]),
    (cfg.SECRET_DOCKERCONFIGJSON, {".dockerconfigjson": "{not json"}, ["data[.dockerconfigjson]"]),
    (cfg.SECRET_BASIC_AUTH, {}, ["data[username]", "data[password]"]),
    (cfg.SECRET_SSH_AUTH, {}, ["data[ssh-privatekey]"]),
    (cfg.SECRET_SA_TOKEN, {}, [f"metadata.annotations[{cfg.SA_NAME_ANNOTATION}]"]),
])
def test_typed_secrets_require_their_keys(type_: str, data: dict[str, str], expected: list[str]) -> None:
    causes = causes_of("Secret", {"type": type_, "stringData": data})
    assert [c[0] for c in causes] == expected


def test_typed_secrets_that_are_complete_pass() -> None:
    assert causes_of("Secret", {"type": cfg.SECRET_TLS, "stringData": {"tls.crt": "c", "tls.key": "k"}}) == []
    assert causes_of("Secret", {"type": cfg.SECRET_DOCKERCONFIGJSON,
                                "stringData": {".dockerconfigjson": '{"auths": {}}'}}) == []
    assert causes_of("Secret", {"type": cfg.SECRET_BASIC_AUTH, "stringData": {"password": ""}}) == []
    assert causes_of("Secret", {"type": "example.com/custom", "data": {}}) == []


def test_updates_respect_type_and_immutable() -> None:
    old = {"type": "Opaque", "data": {"a": b64("1")}}
    assert cfg.validate_secret_update(old, {"type": cfg.SECRET_TLS, "data": {"a": b64("1")}})[0][0] == "type"
    assert cfg.validate_secret_update(old, {"type": "Opaque", "data": {"a": b64("2")}}) == []
    frozen = {**old, "immutable": True}
    assert [c[0] for c in cfg.validate_secret_update(frozen, {"type": "Opaque", "data": {"a": b64("2")}})] == \
        ["immutable", "data"]
    assert cfg.validate_secret_update(frozen, {**frozen, "metadata": {"labels": {"a": "b"}}}) == []
    cm = {"data": {"a": "1"}, "immutable": True}
    assert [c[0] for c in cfg.validate_configmap_update(cm, {"data": {"a": "2"}, "immutable": True})] == ["data"]


def test_pod_defaults_service_account_alias_and_volume_modes() -> None:
    spec: dict[str, Any] = {"volumes": [{"name": "c", "configMap": {"name": "x"}},
                                        {"name": "s", "secret": {"secretName": "y", "defaultMode": 0o400}}]}
    cfg.pod_config_defaults(spec)
    assert "serviceAccountName" not in spec  # `default` is the admission plug-in's
    assert spec["volumes"][0]["configMap"]["defaultMode"] == 0o644
    assert spec["volumes"][1]["secret"]["defaultMode"] == 0o400
    legacy: dict[str, Any] = {"serviceAccount": "builder"}
    cfg.pod_config_defaults(legacy)
    assert legacy["serviceAccountName"] == "builder"


def test_pod_references_are_validated() -> None:
    pod = Pod.model_validate({"metadata": {"name": "p"}, "spec": {
        "volumes": [{"name": "v", "configMap": {"name": "c", "items": [{"key": "k", "path": "../x", "mode": 0o1000}]}},
                    {"name": "w", "secret": {}}],
        "containers": [{"name": "a", "image": "busybox",
                        "env": [{"name": "E", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "bad key"}}},
                                {"name": "F", "valueFrom": {}}],
                        "envFrom": [{"prefix": "1X", "configMapRef": {"name": "c"}}, {}]}]}})
    paths = {c[0] for c in validate_pod(pod)}
    assert paths == {"spec.volumes[0].configMap.items[0].path", "spec.volumes[0].configMap.items[0].mode",
                     "spec.volumes[1].secret.secretName", "spec.containers[0].env[0].valueFrom.configMapKeyRef.key",
                     "spec.containers[0].env[1].valueFrom", "spec.containers[0].envFrom[0].prefix",
                     "spec.containers[0].envFrom[1]"}


# --- the atomic writer -------------------------------------------------------------------------

def _listing(target: Path) -> dict[str, str]:
    return {p.name: os.readlink(p) if p.is_symlink() else "dir" for p in target.iterdir()}


def test_atomic_writer_layout(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    assert write_payload(target, {"a": FileProjection(b"1", 0o644), "sub/b": FileProjection(b"2", 0o400)})
    listing = _listing(target)
    stamp = listing[DATA_DIR_NAME]
    assert stamp.startswith("..") and stamp in listing and listing[stamp] == "dir"
    assert listing["a"] == f"{DATA_DIR_NAME}/a" and listing["sub"] == f"{DATA_DIR_NAME}/sub"
    assert (target / "a").read_bytes() == b"1" and (target / "sub" / "b").read_bytes() == b"2"
    assert (target / "a").stat().st_mode & 0o777 == 0o644
    assert (target / "sub" / "b").stat().st_mode & 0o777 == 0o400
    assert not write_payload(target, {"a": FileProjection(b"1", 0o644), "sub/b": FileProjection(b"2", 0o400)})
    assert _listing(target)[DATA_DIR_NAME] == stamp  # unchanged payload: nothing rewritten


def test_atomic_writer_update_swaps_data_and_drops_old_names(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    write_payload(target, {"a": FileProjection(b"1", 0o644), "gone": FileProjection(b"x", 0o644)})
    first = os.readlink(target / DATA_DIR_NAME)
    reader = (target / "a").open("rb")  # a reader of the old payload keeps it until it closes
    assert write_payload(target, {"a": FileProjection(b"2", 0o644), "new": FileProjection(b"n", 0o600)})
    second = os.readlink(target / DATA_DIR_NAME)
    assert second != first and not (target / first).exists()
    assert (target / "a").read_bytes() == b"2" and (target / "new").read_bytes() == b"n"
    assert not (target / "gone").exists() and not (target / "gone").is_symlink()
    assert set(_listing(target)) == {DATA_DIR_NAME, second, "a", "new"}
    assert reader.read() == b"1"
    reader.close()
    assert write_payload(target, {"a": FileProjection(b"2", 0o400), "new": FileProjection(b"n", 0o600)})
    assert (target / "a").stat().st_mode & 0o777 == 0o400  # a mode change alone is a change


def test_atomic_writer_refuses_escaping_paths(tmp_path: Path) -> None:
    for bad in ("../x", "/etc/x", "..data", "a/../../b"):
        with pytest.raises(PayloadError):
            write_payload(tmp_path / "vol", {bad: FileProjection(b"", 0o644)})


# --- pods consuming ConfigMaps and Secrets -----------------------------------------------------

class Objects:
    def __init__(self) -> None:
        self.configmaps: dict[tuple[str, str], cfg.ConfigMap] = {}
        self.secrets: dict[tuple[str, str], cfg.Secret] = {}

    def add_cm(self, name: str, data: dict[str, str], binary: dict[str, str] | None = None) -> None:
        self.configmaps[("ns", name)] = cfg.ConfigMap.model_validate(
            {"metadata": {"name": name, "namespace": "ns"}, "data": data, "binaryData": binary})

    def add_secret(self, name: str, data: dict[str, str]) -> None:
        self.secrets[("ns", name)] = cfg.Secret.model_validate(
            {"metadata": {"name": name, "namespace": "ns"}, "stringData": data})

    def configmap(self, namespace: str, name: str) -> cfg.ConfigMap | None:
        return self.configmaps.get((namespace, name))

    def secret(self, namespace: str, name: str) -> cfg.Secret | None:
        return self.secrets.get((namespace, name))


def make_pod(container: dict[str, Any], volumes: list[dict[str, Any]] | None = None, name: str = "p") -> Pod:
    spec: dict[str, Any] = {"containers": [{"name": "a", "image": "busybox", **container}], "volumes": volumes,
                            "serviceAccountName": "default"}
    cfg.pod_config_defaults(spec)
    return Pod.model_validate({"metadata": {"name": name, "namespace": "ns", "uid": name}, "spec": spec})


def test_env_from_configmaps_and_secrets_with_kubernetes_precedence() -> None:
    objs = Objects()
    objs.add_cm("app", {"MODE": "prod", "LEVEL": "1", "bad key": "x", "9lives": "y"})
    objs.add_secret("creds", {"PASSWORD": "s3cret", "LEVEL": "2"})
    pod = make_pod({"envFrom": [{"configMapRef": {"name": "app"}}, {"prefix": "S_", "secretRef": {"name": "creds"}},
                                {"secretRef": {"name": "creds"}}],
                    "env": [{"name": "MODE", "value": "dev"},
                            {"name": "ONE", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "LEVEL"}}},
                            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PASSWORD"}}},
                            {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k",
                                                                              "optional": True}}},
                            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}}]})
    skipped: list[str] = []
    env = environment(pod, pod.spec.containers[0], None, None, objs, skipped)
    assert skipped == ["bad key", "9lives"]
    assert env == {"MODE": "dev", "LEVEL": "2", "S_PASSWORD": "s3cret", "S_LEVEL": "2", "PASSWORD": "s3cret",
                   "ONE": "1", "PW": "s3cret", "SA": "default"}
    assert references(pod) == {("ConfigMap", "ns", "app"), ("Secret", "ns", "creds"), ("ConfigMap", "ns", "nope")}


@pytest.mark.parametrize(("container", "message"), [
    ({"env": [{"name": "E", "valueFrom": {"configMapKeyRef": {"name": "missing", "key": "k"}}}]},
     'configmap "missing" not found'),
    ({"env": [{"name": "E", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "nokey"}}}]},
     "couldn't find key nokey in ConfigMap ns/app"),
    ({"env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k"}}}]},
     'secret "missing" not found'),
    ({"envFrom": [{"secretRef": {"name": "missing"}}]}, 'secret "missing" not found'),
])
def test_missing_required_references_are_config_errors(container: dict[str, Any], message: str) -> None:
    objs = Objects()
    objs.add_cm("app", {"k": "v"})
    pod = make_pod(container)
    with pytest.raises(ConfigError, match=message):
        environment(pod, pod.spec.containers[0], None, None, objs)


def test_optional_missing_env_from_is_skipped() -> None:
    pod = make_pod({"envFrom": [{"configMapRef": {"name": "x", "optional": True}},
                                {"secretRef": {"name": "y", "optional": True}}]})
    assert environment(pod, pod.spec.containers[0], None, None, Objects()) == {}


def test_volumes_project_items_modes_and_mount_read_only(tmp_path: Path) -> None:
    objs = Objects()
    objs.add_cm("app", {"app.conf": "a=1", "other": "o"}, {"blob": base64.b64encode(b"\x00\xff").decode()})
    objs.add_secret("creds", {"password": "pw", "user": "u"})
    pod = make_pod({"volumeMounts": [{"name": "cfg", "mountPath": "/etc/app"},
                                     {"name": "sec", "mountPath": "/etc/sec", "readOnly": False},
                                     {"name": "opt", "mountPath": "/opt/x"}]},
                   [{"name": "cfg", "configMap": {"name": "app"}},
                    {"name": "sec", "secret": {"secretName": "creds", "defaultMode": 0o440,
                                               "items": [{"key": "password", "path": "db/pw", "mode": 0o400},
                                                         {"key": "user", "path": "user"}]}},
                    {"name": "opt", "configMap": {"name": "absent", "optional": True}}])
    vols = prepare_volumes(pod, tmp_path, objs)
    cfg_dir, sec_dir, opt_dir = (tmp_path / "p" / "volumes" / n for n in ("cfg", "sec", "opt"))
    assert (cfg_dir / "app.conf").read_text() == "a=1" and (cfg_dir / "blob").read_bytes() == b"\x00\xff"
    assert (cfg_dir / "app.conf").stat().st_mode & 0o777 == 0o644
    assert (sec_dir / "db" / "pw").read_text() == "pw" and (sec_dir / "db" / "pw").stat().st_mode & 0o777 == 0o400
    assert (sec_dir / "user").stat().st_mode & 0o777 == 0o440 and not (sec_dir / "password").exists()
    assert [p.name for p in opt_dir.iterdir() if not p.name.startswith("..")] == []
    binds = volume_binds(pod.spec.containers[0], vols)
    assert binds == [f"{cfg_dir}:/etc/app:ro", f"{sec_dir}:/etc/sec:ro", f"{opt_dir}:/opt/x:ro"]
    objs.add_cm("app", {"app.conf": "a=2"})
    prepare_volumes(pod, tmp_path, objs)
    assert (cfg_dir / "app.conf").read_text() == "a=2" and not (cfg_dir / "other").exists()


def test_missing_volume_sources_name_the_volume(tmp_path: Path) -> None:
    objs = Objects()
    objs.add_cm("app", {"k": "v"})
    for volume, message in (({"name": "v", "configMap": {"name": "nope"}}, 'configmap "nope" not found'),
                            ({"name": "v", "secret": {"secretName": "nope"}}, 'secret "nope" not found'),
                            ({"name": "v", "configMap": {"name": "app", "items": [{"key": "x", "path": "x"}]}},
                             "configmap references non-existent config key: x")):
        with pytest.raises(ConfigError, match=message) as err:
            prepare_volumes(make_pod({}, [volume]), tmp_path, objs)
        assert err.value.volume == "v"


def test_kubelet_syncs_the_pods_that_use_a_changed_object() -> None:
    from tests.unit.test_kubelet_sync import make

    uses_volume = make_pod({}, [{"name": "v", "configMap": {"name": "app"}}], name="vol")
    uses_env = make_pod({"envFrom": [{"configMapRef": {"name": "app"}}]}, name="env")
    uses_secret = make_pod({"envFrom": [{"secretRef": {"name": "app"}}]}, name="sec")
    kubelet, _, _ = make([uses_volume, uses_env, uses_secret])
    kubelet._config_changed(("ConfigMap", "ns", "app"))
    queued = {kubelet.queue.get(timeout=0.1), kubelet.queue.get(timeout=0.1), kubelet.queue.get(timeout=0.1)}
    assert queued == {"ns/vol", "ns/env", None}


def test_a_changed_secret_is_swapped_into_its_volume(tmp_path: Path) -> None:
    objs = Objects()
    objs.add_secret("creds", {"password": "pw1", "user": "u"})
    pod = make_pod({"volumeMounts": [{"name": "sec", "mountPath": "/etc/sec"}]},
                   [{"name": "sec", "secret": {"secretName": "creds", "defaultMode": 0o400}}])
    prepare_volumes(pod, tmp_path, objs)
    sec_dir = tmp_path / "p" / "volumes" / "sec"
    before = os.readlink(sec_dir / DATA_DIR_NAME)
    assert (sec_dir / "password").read_text() == "pw1"
    objs.add_secret("creds", {"password": "pw2"})
    prepare_volumes(pod, tmp_path, objs)
    assert (sec_dir / "password").read_text() == "pw2" and not (sec_dir / "user").exists()
    assert (sec_dir / "password").stat().st_mode & 0o777 == 0o400
    assert os.readlink(sec_dir / DATA_DIR_NAME) != before  # a new timestamped dir behind one symlink swap


class VersionedApi:
    """A stand-in API for the kubelet's object cache: objects by (kind, namespace, name), each GET counted."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Any] = {}

    def put_secret(self, name: str, value: str, version: str) -> None:
        self.objects[("Secret", "ns", name)] = cfg.Secret.model_validate(
            {"metadata": {"name": name, "namespace": "ns", "resourceVersion": version}, "stringData": {"k": value}})

    def get(self, kind: str, name: str, namespace: str) -> Any:
        from minik8s.errors import NotFound

        found = self.objects.get((kind, namespace, name))
        if found is None:
            raise NotFound(f'{kind} "{name}" not found')
        return found


def test_the_kubelet_cache_reports_a_changed_secret() -> None:
    from minik8s.kubelet.configrefs import ApiConfigObjects

    api = VersionedApi()
    api.put_secret("creds", "one", "1")
    changed: list[tuple[str, str, str]] = []
    objects = ApiConfigObjects(api, resync_seconds=60, on_change=changed.append)
    secret = objects.secret("ns", "creds")
    assert secret is not None and secret.data == {"k": b64("one")}
    objects.refresh()
    assert changed == []  # same version: nothing to do
    api.put_secret("creds", "two", "2")
    objects.refresh()
    assert changed == [("Secret", "ns", "creds")]
    fresh = objects.secret("ns", "creds")
    assert fresh is not None and fresh.data == {"k": b64("two")}


def test_a_refused_object_does_not_stall_the_refresh_of_the_others() -> None:
    """The Node authorizer refuses a read once no pod here names the object (its namespace was deleted):
    that object is forgotten, and every other one is still read again and its change reported."""
    from minik8s.errors import Forbidden
    from minik8s.kubelet.configrefs import ApiConfigObjects

    class Refusing(VersionedApi):
        refused: set[str] = set()

        def get(self, kind: str, name: str, namespace: str) -> Any:
            if name in self.refused:
                raise Forbidden(f'secrets "{name}" is forbidden: no pod bound to node "n" references it')
            return super().get(kind, name, namespace)

    api = Refusing()
    api.put_secret("gone", "x", "1")
    api.put_secret("creds", "one", "1")
    changed: list[tuple[str, str, str]] = []
    objects = ApiConfigObjects(api, resync_seconds=60, on_change=changed.append)
    assert objects.secret("ns", "gone") is not None and objects.secret("ns", "creds") is not None
    api.refused = {"gone"}
    api.put_secret("creds", "two", "2")
    objects.refresh()
    assert changed == [("Secret", "ns", "creds")]
    assert ("Secret", "ns", "gone") not in objects._cache


def test_kubelet_syncs_the_pods_that_mount_a_changed_secret() -> None:
    from tests.unit.test_kubelet_sync import make

    mounts = make_pod({}, [{"name": "v", "secret": {"secretName": "creds"}}], name="vol")
    other = make_pod({}, [{"name": "v", "secret": {"secretName": "else"}}], name="other")
    kubelet, _, _ = make([mounts, other])
    kubelet._config_changed(("Secret", "ns", "creds"))
    assert kubelet.queue.get(timeout=0.1) == "ns/vol"
    assert kubelet.queue.get(timeout=0.1) is None
