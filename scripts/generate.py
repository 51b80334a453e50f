"""Generate a project from this template, as `cookiecutter` does, with one difference: a bad
answer ends in one sentence. (cookiecutter's own command prints its traceback after the
sentence our hooks print, up to cookiecutter 2.7 at least.)

    python scripts/generate.py                                   # asks the questions
    python scripts/generate.py --no-input task=text-classification dataset=data/reviews.csv
    python scripts/generate.py --output-dir projects --template gh:<org>/trainer-template

Any Python with cookiecutter>=2.7 installed runs it; `scripts/setup.sh` makes one in .venv.
"""

import argparse
import difflib
import json
import logging
import re
import sys
from pathlib import Path

from cookiecutter.exceptions import CookiecutterException, FailedHookException
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
# cookiecutter's words for an answer that is not one of a question's choices.
NOT_A_CHOICE = re.compile(r"(.*) provided for choice variable (\w+), but the choices are \[(.*)\]")


def main(argv):
    questions = json.loads((TEMPLATE / "cookiecutter.json").read_text())
    names = [name for name in questions if not name.startswith("_")]
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog=f"answers: {', '.join(names)} (see docs/prompts.md)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("answers", nargs="*", metavar="key=value", help="answers to the questions")
    parser.add_argument("--no-input", action="store_true", help="take the defaults, ask nothing")
    parser.add_argument("-o", "--output-dir", default=".", help="where the project folder goes")
    parser.add_argument("--template", default=str(TEMPLATE), help="path or URL of the template")
    parser.add_argument("--config-file", help="a cookiecutter user config file")
    args = parser.parse_args(argv)
    answers = dict(answer.partition("=")[::2] for answer in args.answers)
    if not all("=" in answer for answer in args.answers):
        return say("Answers look like key=value, for example task=text-classification.")
    for name in answers:
        if name not in names and args.template == str(TEMPLATE):
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {close[0]}?" if close else f"the questions are {', '.join(names)}."
            return say(f"There is no question {name}; {hint}")
    # A local file or folder counts from where you are, also with --output-dir elsewhere (the
    # hooks, run inside the new project, count a relative path from the folder it is made in).
    dataset = answers.get("dataset", "")
    if dataset and not Path(dataset).is_absolute() and Path(dataset).exists():
        answers["dataset"] = str(Path(dataset).resolve())
    # A failing hook has already printed its sentence; cookiecutter would log a traceback too.
    logging.getLogger("cookiecutter").addHandler(logging.NullHandler())
    logging.getLogger("cookiecutter").propagate = False
    try:
        cookiecutter(
            args.template,
            no_input=args.no_input,
            extra_context=answers,
            output_dir=args.output_dir,
            config_file=args.config_file,
        )
    except FailedHookException:
        return 1
    except ValueError as error:
        match = NOT_A_CHOICE.match(str(error))
        if not match:
            raise
        value, name, choices = match.groups()
        listed = choices.replace("'", "")
        return say(f"The answer {name}={value!r} is not allowed; choose one of {listed}.")
    except CookiecutterException as error:
        return say(str(error).splitlines()[0])
    except KeyboardInterrupt:
        return say("Stopped.")
    return 0


def say(sentence):
    print(sentence, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
