"""provider/frozenenv.py: the environment the self-contained form's children inherit."""

from __future__ import annotations

from provider.frozenenv import restore


def test_the_bootloaders_library_path_goes_when_the_node_had_none() -> None:
    environ = {"LD_LIBRARY_PATH": "/opt/rcp/_internal", "_PYI_ARCHIVE_FILE": "/opt/rcp/x", "PATH": "/bin"}
    restore(environ)
    assert environ == {"PATH": "/bin"}


def test_the_nodes_library_path_comes_back() -> None:
    environ = {"LD_LIBRARY_PATH": "/opt/rcp/_internal:/usr/local/lib", "LD_LIBRARY_PATH_ORIG": "/usr/local/lib",
               "_PYI_PARENT_PROCESS_LEVEL": "1", "HOME": "/root"}  # fmt: skip
    restore(environ)
    assert environ == {"LD_LIBRARY_PATH": "/usr/local/lib", "HOME": "/root"}


def test_an_environment_pyinstaller_never_touched_stays_as_it_is() -> None:
    environ = {"PATH": "/bin", "LD_PRELOAD": "libfaketime.so.1"}
    restore(environ)
    assert environ == {"PATH": "/bin", "LD_PRELOAD": "libfaketime.so.1"}
