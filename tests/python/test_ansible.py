"""Ansible against Keywarden (issue 18): the `amazon.aws.kms_key` and
`amazon.aws.kms_key_info` modules from the `ansible` package manage keys the
way they manage AWS KMS keys, pointed at Keywarden with `endpoint_url`.

Each test writes a playbook into its tmp_path and runs the venv's
`ansible-playbook` on `localhost` (local connection, the venv's Python),
with the account's credentials in AWS_* variables and everything Ansible
would keep in the home directory (its home, temp dirs, config) inside
tmp_path. The `ansible.posix.json` stdout callback prints the play's results
as JSON; boto3 then checks what Ansible says against what Keywarden holds.

Module reference: https://docs.ansible.com/ansible/latest/collections/amazon/aws/kms_key_module.html
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from kw_helpers import AWS_ENV_PREFIXES, REGION, REPO

PLAYBOOK_TIMEOUT_S = 300


def ansible_playbook() -> Path:
    exe = Path(sys.executable).parent / "ansible-playbook"
    if not exe.exists():
        pytest.fail(f"ansible-playbook is not installed next to {sys.executable} (tests/python/requirements.txt)")
    return exe


class Ansible:
    """Runs plays on localhost against one Keywarden account."""

    def __init__(self, server, account, tmp_path: Path):
        self.server = server
        self.account = account
        self.dir = tmp_path / "ansible"
        self.dir.mkdir()
        (self.dir / "ansible.cfg").write_text("[defaults]\n")
        (self.dir / "inventory").write_text(
            f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        )
        self.runs = 0

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(AWS_ENV_PREFIXES + ("ANSIBLE_",))}
        d = self.dir
        env.update(
            AWS_ACCESS_KEY_ID=self.account.access_key_id,
            AWS_SECRET_ACCESS_KEY=self.account.secret_access_key,
            AWS_REGION=REGION,
            # The session fixture's empty AWS config files, no instance metadata.
            AWS_CONFIG_FILE=os.environ["AWS_CONFIG_FILE"],
            AWS_SHARED_CREDENTIALS_FILE=os.environ["AWS_SHARED_CREDENTIALS_FILE"],
            AWS_EC2_METADATA_DISABLED="true",
            # ansible-core refuses to start without a UTF-8 locale.
            LC_ALL="C.UTF-8",
            ANSIBLE_CONFIG=str(d / "ansible.cfg"),
            ANSIBLE_HOME=str(d / "home"),
            ANSIBLE_LOCAL_TEMP=str(d / "tmp"),
            ANSIBLE_REMOTE_TEMP=str(d / "remote-tmp"),
            # Only the collections the `ansible` package ships in the venv.
            ANSIBLE_COLLECTIONS_PATH=str(d / "collections"),
            ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_RETRY_FILES_ENABLED="0",
            ANSIBLE_DEPRECATION_WARNINGS="0",
            ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        )
        return env

    def run(self, *tasks: dict[str, Any]) -> list[dict[str, Any]]:
        """Runs one play of `tasks` (module name -> arguments; `endpoint_url`
        is added) and returns each task's result on localhost."""
        self.runs += 1
        play = {
            "name": f"keywarden {self.runs}",
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [],
        }
        for i, task in enumerate(tasks):
            ((module, args),) = task.items()
            play["tasks"].append({"name": f"task {i}", module: {**args, "endpoint_url": self.server.url}})
        book = self.dir / f"play{self.runs}.yml"
        book.write_text(yaml.safe_dump([play], sort_keys=False))
        results = self.run_playbook(book)
        assert len(results) == len(tasks), results
        return results

    def run_playbook(self, book: Path, *args: str) -> list[dict[str, Any]]:
        """Runs `ansible-playbook book args...` and returns each task's result
        on localhost. A failed task fails the test with the module's message
        and the server log's tail."""
        proc = subprocess.run(
            [str(ansible_playbook()), "-i", str(self.dir / "inventory"), str(book), *args],
            cwd=self.dir,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=PLAYBOOK_TIMEOUT_S,
        )
        try:
            doc = json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise AssertionError(
                f"ansible-playbook (exit {proc.returncode}) printed no JSON:\n"
                f"stdout: {proc.stdout[-4000:]}\nstderr: {proc.stderr[-4000:]}"
            ) from None
        results = [t["hosts"]["localhost"] for p in doc["plays"] for t in p["tasks"]]
        failed = [r for r in results if r.get("failed")]
        assert proc.returncode == 0 and not failed, (
            f"ansible-playbook exited {proc.returncode}; failed tasks: "
            f"{json.dumps(failed, indent=1, default=str)[-6000:]}\nstderr: {proc.stderr[-2000:]}\n"
            f"server log tail:\n{self.server.log_text()[-3000:]}"
        )
        return results


@pytest.fixture
def ansible(server, account, tmp_path) -> Ansible:
    return Ansible(server, account, tmp_path)


def key_policy(account_id: str) -> dict[str, Any]:
    root = f"arn:aws:iam::{account_id}:root"
    return {
        "Version": "2012-10-17",
        "Id": "ansible-managed",
        "Statement": [
            {
                "Sid": "Enable IAM User Permissions",
                "Effect": "Allow",
                "Principal": {"AWS": root},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "Allow use of the key",
                "Effect": "Allow",
                "Principal": {"AWS": [root]},
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
            },
        ],
    }


def key_task(account, alias: str, **extra: Any) -> dict[str, Any]:
    """The declared key: alias, description, tags and a policy."""
    return {
        "amazon.aws.kms_key": {
            "alias": alias,
            "description": "managed by Ansible",
            "tags": {"team": "storage", "env": "test"},
            "policy": key_policy(account.account_id),
            **extra,
        }
    }


def new_alias() -> str:
    return f"ansible-{uuid.uuid4().hex[:10]}"


def key_id_of(kms, alias: str) -> str:
    return kms.describe_key(KeyId=f"alias/{alias}")["KeyMetadata"]["KeyId"]


def test_creates_a_key_with_alias_description_tags_and_policy(ansible, account, kms):
    alias = new_alias()
    (result,) = ansible.run(key_task(account, alias))
    assert result["changed"] is True

    meta = kms.describe_key(KeyId=f"alias/{alias}")["KeyMetadata"]
    assert result["key_id"] == meta["KeyId"]
    assert result["key_arn"] == meta["Arn"]
    assert meta["Description"] == "managed by Ansible"
    assert meta["KeyState"] == "Enabled"
    assert meta["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert meta["KeyUsage"] == "ENCRYPT_DECRYPT"
    key_id = meta["KeyId"]

    aliases = [a for a in kms.list_aliases(KeyId=key_id)["Aliases"]]
    assert [a["AliasName"] for a in aliases] == [f"alias/{alias}"]
    tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=key_id)["Tags"]}
    assert tags == {"team": "storage", "env": "test"}
    policy = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    assert policy == key_policy(account.account_id)

    # What the module reports is what Keywarden holds.
    assert result["aliases"] == [alias]
    assert result["tags"] == tags
    assert result["key_policies"] == [key_policy(account.account_id)]
    assert result["key_state"] == "Enabled"


def test_a_second_identical_run_changes_nothing(ansible, account, kms):
    alias = new_alias()
    (first,) = ansible.run(key_task(account, alias))
    assert first["changed"] is True
    (second,) = ansible.run(key_task(account, alias))
    assert second["changed"] is False, second
    assert second["key_id"] == first["key_id"]
    # No second key was made.
    assert [k["KeyId"] for k in kms.list_keys()["Keys"]] == [first["key_id"]]

    # A changed tag value, a removed tag (purge_tags) and a new description
    # are changes (so the comparison above is not vacuous), and the run
    # after them is quiet again.
    changed = key_task(account, alias, description="orders database")
    changed["amazon.aws.kms_key"]["tags"] = {"team": "payments"}
    (third,) = ansible.run(changed)
    assert third["changed"] is True
    assert third["tags"] == {"team": "payments"}
    key_id = first["key_id"]
    tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=key_id)["Tags"]}
    assert tags == {"team": "payments"}
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == "orders database"
    (fourth,) = ansible.run(changed)
    assert fourth["changed"] is False, fourth


def test_enables_rotation(ansible, account, kms):
    alias = new_alias()
    ansible.run(key_task(account, alias))
    key_id = key_id_of(kms, alias)
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is False

    (result,) = ansible.run(key_task(account, alias, enable_key_rotation=True))
    assert result["changed"] is True
    assert result["enable_key_rotation"] is True
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True

    (again,) = ansible.run(key_task(account, alias, enable_key_rotation=True))
    assert again["changed"] is False, again


def test_disables_and_reenables_the_key(ansible, account, kms):
    alias = new_alias()
    ansible.run(key_task(account, alias))
    key_id = key_id_of(kms, alias)

    (result,) = ansible.run(key_task(account, alias, enabled=False))
    assert result["changed"] is True
    assert result["key_state"] == "Disabled"
    meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert meta["KeyState"] == "Disabled"
    assert meta["Enabled"] is False

    (again,) = ansible.run(key_task(account, alias, enabled=False))
    assert again["changed"] is False, again

    (enabled,) = ansible.run(key_task(account, alias))
    assert enabled["changed"] is True
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"


def test_schedules_deletion_with_a_seven_day_window(ansible, account, kms):
    alias = new_alias()
    ansible.run(key_task(account, alias))
    key_id = key_id_of(kms, alias)

    before = datetime.datetime.now(datetime.timezone.utc)
    (result,) = ansible.run({"amazon.aws.kms_key": {"alias": alias, "state": "absent", "pending_window": 7}})
    after = datetime.datetime.now(datetime.timezone.utc)
    assert result["changed"] is True
    assert result["key_state"] == "PendingDeletion"

    meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion"
    week = datetime.timedelta(days=7)
    # AWS may round the date up to the next hour or so; seven days, not 30.
    assert before + week - datetime.timedelta(minutes=1) <= meta["DeletionDate"]
    assert meta["DeletionDate"] <= after + week + datetime.timedelta(hours=1)

    (again,) = ansible.run({"amazon.aws.kms_key": {"alias": alias, "state": "absent", "pending_window": 7}})
    assert again["changed"] is False, again
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["DeletionDate"] == meta["DeletionDate"]

    # `state: present` again cancels the deletion and enables the key.
    (back,) = ansible.run(key_task(account, alias))
    assert back["changed"] is True
    meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert meta["KeyState"] == "Enabled"
    assert "DeletionDate" not in meta


def test_kms_key_info_finds_the_key_by_alias(ansible, account, kms):
    alias = new_alias()
    other = new_alias()
    ansible.run(key_task(account, alias), key_task(account, other, description="another key"))
    key_id = key_id_of(kms, alias)

    (info,) = ansible.run({"amazon.aws.kms_key_info": {"alias": alias}})
    assert info["changed"] is False
    (key,) = info["kms_keys"]
    assert key["key_id"] == key_id
    assert key["key_arn"] == kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
    assert key["aliases"] == [alias]
    assert key["description"] == "managed by Ansible"
    assert key["key_state"] == "Enabled"
    assert key["enable_key_rotation"] is False
    assert key["tags"] == {"team": "storage", "env": "test"}
    assert key["key_policies"] == [key_policy(account.account_id)]

    # Filters over all the account's keys.
    (listed,) = ansible.run({"amazon.aws.kms_key_info": {"filters": {"alias": other}}})
    assert [k["aliases"] for k in listed["kms_keys"]] == [[other]]
    (missing,) = ansible.run({"amazon.aws.kms_key_info": {"alias": "no-such-alias"}})
    assert missing["kms_keys"] == []


MYSQL = "arn:aws:iam::000000000000:role/keywarden-product/mysql"


def test_grants_are_created_once_and_purged(ansible, account, kms):
    alias = new_alias()
    grant = {
        "name": "mysql-db-1",
        "grantee_principal": MYSQL,
        "retiring_principal": MYSQL,
        "operations": ["Decrypt", "GenerateDataKey"],
        "constraints": {"encryption_context_subset": {"instance": "db-1"}},
    }
    (created,) = ansible.run(key_task(account, alias, grants=[grant]))
    assert created["changed"] is True
    key_id = key_id_of(kms, alias)
    (listed,) = kms.list_grants(KeyId=key_id)["Grants"]
    assert listed["Name"] == "mysql-db-1"
    assert listed["GranteePrincipal"] == MYSQL
    assert sorted(listed["Operations"]) == ["Decrypt", "GenerateDataKey"]
    assert listed["Constraints"] == {"EncryptionContextSubset": {"instance": "db-1"}}

    (again,) = ansible.run(key_task(account, alias, grants=[grant]))
    assert again["changed"] is False, again
    assert [g["grant_id"] for g in again["grants"]] == [listed["GrantId"]]

    (purged,) = ansible.run(key_task(account, alias, grants=[], purge_grants=True))
    assert purged["changed"] is True
    assert kms.list_grants(KeyId=key_id)["Grants"] == []


def doc_playbook() -> str:
    """The playbook in docs/integrations/ansible.md (its first yaml block)."""
    text = (REPO / "docs" / "integrations" / "ansible.md").read_text()
    start = text.index("```yaml\n") + len("```yaml\n")
    return text[start : text.index("```", start)]


def test_the_documented_playbook_runs_as_documented(ansible, account, kms, tmp_path):
    book = tmp_path / "keys.yml"
    book.write_text(doc_playbook())
    args = ("-e", f"account_id={account.account_id}", "-e", f"keywarden_url={ansible.server.url}")
    key, info, shown = ansible.run_playbook(book, *args)
    assert key["changed"] is True
    meta = kms.describe_key(KeyId="alias/orders-db")["KeyMetadata"]
    assert meta["Description"] == "Orders database"
    assert kms.get_key_rotation_status(KeyId=meta["KeyId"])["KeyRotationEnabled"] is True
    policy = json.loads(kms.get_key_policy(KeyId=meta["KeyId"], PolicyName="default")["Policy"])
    assert policy["Statement"][0]["Principal"] == {"AWS": f"arn:aws:iam::{account.account_id}:root"}
    assert [k["key_arn"] for k in info["kms_keys"]] == [meta["Arn"]]
    assert shown["msg"] == meta["Arn"]

    key, _, _ = ansible.run_playbook(book, *args)
    assert key["changed"] is False, key
