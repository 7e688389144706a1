#!/bin/sh
# An example PermissionRequest hook (it works unchanged under the Codex CLI): it refuses
# force pushes and lets `git push origin BRANCH` through without asking; anything else it
# leaves to the person.
#
# Install (as the README says): copy this file and hooks.json to ~/.config/execgate/ and
# make this file executable. hooks.json names it by absolute path (through $HOME), so what
# runs is always this file, never one in the folder a command runs in; execgate also runs
# hooks in the folder it was started in, and refuses to run a hook whose script the
# sandbox can write.
#
# The request arrives as one JSON object on stdin; tool_input.command is the command line,
# each word shell-quoted when it needs it, e.g.
#   {"tool_input": {"command": "/usr/bin/git push --force origin main"}, ...}
# It is judged word by word, as the exact argv: text matching ("contains `git push`")
# lets `git push evil "x git push"` through. Python (isolated mode: no PYTHON* variables,
# no user site) parses the JSON and splits the words as sh would.
exec /usr/bin/python3 -I -c '
import json, re, shlex, sys

def say(behavior, message=None):
    decision = {"behavior": behavior}
    if message:
        decision["message"] = message
    print(json.dumps({"hookSpecificOutput": {"hookEventName": "PermissionRequest",
                                             "decision": decision}}))
    sys.exit(0)

try:
    words = shlex.split(json.load(sys.stdin)["tool_input"]["command"])
except (ValueError, KeyError, TypeError):
    sys.exit(0)  # not a command line this hook understands: no opinion

if len(words) < 2 or words[0] not in ("/usr/bin/git", "/usr/local/bin/git") or words[1] != "push":
    sys.exit(0)  # not a push: no opinion
args = words[2:]
def forces(a):
    if a in ("--force", "--force-with-lease", "--force-if-includes", "--mirror"):
        return True
    if a.startswith(("--force-with-lease=", "+")):  # +REF pushes by force too
        return True
    return a.startswith("-") and not a.startswith("--") and "f" in a  # -f, -uf

if any(forces(a) for a in args):
    say("deny", "force-pushing is not allowed here; push without --force or +")
# Exactly `git push origin BRANCH`, BRANCH a plain name: allowed.
if len(args) == 2 and args[0] == "origin" and re.fullmatch(r"[A-Za-z0-9._/-]+", args[1]) \
        and not args[1].startswith(("-", ".", "/")):
    say("allow")
sys.exit(0)  # anything else: no opinion; the person is asked
'
