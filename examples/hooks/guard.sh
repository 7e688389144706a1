#!/bin/sh
# An example PermissionRequest hook (it works unchanged under the Codex CLI).
#
# Install: copy this file and hooks.json into your project's .execgate/ folder. Hooks run
# in the command's working directory, which the agent chooses, so in real use change the
# command in hooks.json to this script's absolute path.
#
# The request arrives as one JSON object on stdin; tool_input.command is the command line,
# e.g. {"tool_input":{"command":"/usr/bin/git push --force origin main"}, ...}.
# This hook matches on the raw JSON text to stay plain sh; a real one might use jq.
input=$(cat)

case "$input" in
*'"command":"'*'git push'*'--force'*)
    # Exit 2: deny, with stderr as the reason shown to the agent.
    echo "force-pushing is not allowed here; push without --force" >&2
    exit 2
    ;;
*'"command":"'*'rm -rf /"'* | *'"command":"'*'rm -rf / '*)
    # A JSON deny that also ends the whole session.
    printf '%s\n' '{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"deny","message":"refusing to delete the filesystem","interrupt":true}}}'
    exit 0
    ;;
*'"command":"'*'/git status'*)
    # A JSON allow: no prompt for a read-only git command.
    printf '%s\n' '{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"allow"}}}'
    exit 0
    ;;
esac

# No output: no opinion; the normal approval prompt follows.
exit 0
