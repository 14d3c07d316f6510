from click.shell_completion import ShellComplete

from polstereo.cli.main import cli


def complete(args, incomplete):
    return [c.value for c in ShellComplete(cli, {}, "polstereo", "_POLSTEREO_COMPLETE").get_completions(args, incomplete)]


def test_commands_complete_from_the_lazy_group():
    assert complete([], "lea") == ["learn-pol"]
    assert set(complete([], "")) >= {"adapt", "learn-pol", "finetune", "check-feasibility", "eval", "infer",
                                      "inspect", "make-synthetic", "convert-dataset", "export"}


def test_options_of_a_command_complete_including_config():
    assert complete(["adapt"], "--mask") == ["--mask-ratio", "--mask-patch"]
    assert "--config" in complete(["eval"], "--con")
