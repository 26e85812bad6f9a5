#!/usr/bin/python3
"""aiinfn: run interLink's HTCondor plugin on the loopback address only, without Flask's debugger.

The plugin (handles.py, a Flask app) serves Flask's development server on every address with the
debugger on when run as a script. This launcher loads it as a module instead (its own start-up under
``__main__`` does not run), hands it its command-line options from a JSON file the role writes (one
option per key: data, never a shell line), and serves the plugin's ``app`` on ``bind`` (127.0.0.1),
where only the interLink API on the same node calls it.

    htcondor-plugin-launch.py PLUGIN OPTIONS.json
"""

import json
import runpy
import sys


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    plugin, options_file = sys.argv[1], sys.argv[2]
    with open(options_file) as f:
        doc = json.load(f)
    argv = [plugin, "--port", str(int(doc["port"]))]
    for key, value in sorted((doc.get("options") or {}).items()):
        if value:
            argv += [f"--{key}", str(value)]
    sys.argv = argv
    module = runpy.run_path(plugin, run_name="interlink_htcondor_plugin")
    module["app"].run(host=str(doc["bind"]), port=int(doc["port"]), debug=False, use_reloader=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
