"""The benchmark suite of issue 6: intake ceiling ratio, time to mitigation, storm
memory and loss, rule scaling, and profiling of the daemon under load.

Run it with ``.venv/bin/python bench/run.py [--quick]`` (see bench/README.md).
Nothing here is imported by the daemon, and nothing here may ever send traffic
anywhere but 127.0.0.1.
"""
