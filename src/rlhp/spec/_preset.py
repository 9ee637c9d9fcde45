"""What both stages share: their error, the conf directory, the preset's YAML."""

from pathlib import Path

import yaml

CONF = Path(__file__).resolve().parents[3] / "conf"
if not CONF.is_dir():  # installed: conf ships inside the package
    CONF = Path(__file__).resolve().parents[1] / "conf"


class SpecError(Exception):
    """A spec or sweep that cannot be turned into a preset."""


def to_yaml(data: dict) -> str:
    """Block YAML with flow-style leaf lists (hid_layers: [64, 64])."""

    class Dumper(yaml.SafeDumper):
        pass

    def flow_list(dumper, items):
        flow = all(not isinstance(x, dict | list) for x in items)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flow)

    Dumper.add_representer(list, flow_list)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, width=100)
