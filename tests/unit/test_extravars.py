"""What responder writes for ansible-runner: values tagged !unsafe, identifiers only in the playbook."""

from __future__ import annotations

import yaml

from responder.execution.ansible_input import StepInvocation, build_playbook, dump_extravars
from responder.playbook.model import OnFailure


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!unsafe", lambda loader, node: ("UNSAFE", loader.construct_scalar(node)))


def test_every_string_value_is_unsafe_and_keys_are_plain() -> None:
    text = dump_extravars(
        {
            "responder": {
                "steps": {"a": {"container": "{{ lookup('pipe','id') }}", "n": 3, "l": ["x", {"k": "v"}]}}
            }
        }
    )
    data = yaml.load(text, Loader=_Loader)
    step = data["responder"]["steps"]["a"]
    assert step["container"] == ("UNSAFE", "{{ lookup('pipe','id') }}")
    assert step["n"] == 3
    assert step["l"] == [("UNSAFE", "x"), {"k": ("UNSAFE", "v")}]


def test_generated_playbook_holds_no_values() -> None:
    step = StepInvocation(
        "isolate", "isolate_network", {"container": "evil {{ x }}"}, {}, "all", OnFailure.CONTINUE, 30
    )
    plays = build_playbook([step])
    text = yaml.safe_dump(plays)
    assert "evil" not in text
    play = plays[0]
    assert play["name"] == "responder:isolate"
    include = play["tasks"][0]["block"][0]
    assert include["vars"] == {"container": "{{ responder.steps.isolate.container }}"}
    assert "timeout" not in play["tasks"][0]  # enforced by the runner's watchdog instead
    assert "rescue" in play["tasks"][0]


def test_secret_arguments_read_from_the_secrets_file() -> None:
    step = StepInvocation("use", "use_secret", {"out_file": "/x"}, {"token": "tok"})
    include = build_playbook([step])[0]["tasks"][0]["block"][0]
    assert "responder.secrets_file" in include["vars"]["token"]
    assert include["no_log"] is True


def test_target_environment_is_set_on_every_play() -> None:
    steps = [StepInvocation(s, "isolate_network", {"container": "c"}, {}) for s in ("a", "b")]
    plays = build_playbook(steps, {"RESPONDER_DOCKER_TIMEOUT": "5"})
    assert [p["environment"] for p in plays] == [
        {
            "PYTHONUNBUFFERED": "",
            "DOCKER_HOST": "{{ responder_docker_host | default(omit) }}",
            "RESPONDER_DOCKER_TIMEOUT": "5",
        }
    ] * 2


def test_modules_never_read_their_pipelined_source_unbuffered() -> None:
    # PYTHONUNBUFFERED=1 in a target's environment would make every module's Python read its
    # pipelined AnsiballZ script from stdin one byte per read(2); empty means unset.
    step = StepInvocation("a", "isolate_network", {"container": "c"}, {})
    assert build_playbook([step])[0]["environment"]["PYTHONUNBUFFERED"] == ""
