"""A resident Kiln: one warm process per user that runs each command in a fork of
itself, so that a command pays for Python's start-up but not for Kiln's imports.

`kiln server start` starts it; every `kiln` command of the same user then hands its
arguments, environment, working directory and standard streams to it over a Unix
socket (`client`), and the server forks a child that runs the command as this
process would have (`server`). Where no server runs, or it would not run the
command as this process would (another user, other namespaces or groups, limits it
cannot give, code changed since it started, a command that takes the terminal as its
own), the command runs in its own process, as always.
"""
