"""Write the Recommended cell (round 21's: the latent radius set again where the pushed layer is linear) of a cell of
the previous Recommended whose model is pushed at a convolution.

With ``latent_recalibrate_on`` "linear" a repair whose pushed layer is not a linear one never sets the radius again:
its model and figures are the previous Recommended's run, bit for bit (tests/core/test_unlearn.py,
``test_the_radius_is_calibrated_again_every_few_epochs_on_the_model_being_repaired``), and its report says why in
``defense_details.latent.recalibration_skipped``. The ASC-10 ResNet's pushed layer is ``head_conv``. A cell whose
model is pushed at a linear layer is refused: that one must be run.

    python docs/experiments/latent_recalibrate/derive_conv_cell.py CELL.json   (CELL: a tp2 cell, or the previous
    Recommended's own)

(runs/q21/derive.sh ran it on the three ResNet cells of the README's first table.)
"""

import dataclasses
import json
import shutil
import sys
from pathlib import Path

from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository
from core.checkpoint import load_checkpoint  # noqa: E402
from core.defenses import DEFENSES  # noqa: E402
from core.defenses.latent import LatentAdversary, latent_layer  # noqa: E402
from core.models import split_front_end  # noqa: E402
from core.presets import PRESETS, matching_preset, preset_record  # noqa: E402

cell = Path(sys.argv[1])
row = json.loads(cell.read_text())
seed = int(cell.stem.rsplit("seed", 1)[1])
target = cell.with_name(cell.name.split("_seed")[0].rsplit("_", 1)[0] + f"_gnft@recommended_seed{seed}.json")
assert not target.exists(), target
config_class = DEFENSES["gnft"].Config
known = {f.name for f in dataclasses.fields(config_class)}
then = config_class(**{k: v for k, v in row["defense"].items() if k in known})
assert dataclasses.replace(then, latent_recalibrate=0) == then, "the cell set its radius again: not the previous one"
now = dataclasses.replace(then, **{k: PRESETS["recommended"].settings[k] for k in ("latent_recalibrate",
                          "latent_growth", "latent_recalibrate_on")})  # fmt: skip
assert matching_preset("gnft", now) == "recommended", "the cell is not the previous Recommended with other run fields"
model, _ = load_checkpoint(row["model"])
_, body = split_front_end(model)
name, layer = latent_layer(body, now.latent_depth)
assert name == row["defense_details"]["latent"]["layer"] and not isinstance(layer, nn.Linear), f"{name} is linear"
adversary = LatentAdversary(body, now.latent_depth, 0.3, 0.1, 1, 0, None)
assert not adversary.recalibrates(now.latent_recalibrate_on)  # the product's own rule, and its words
skipped = adversary.recalibration_skipped
adversary.remove()
out = dict(row)
out["defense"] = {"name": "gnft", **dataclasses.asdict(now)}
out["preset"] = preset_record("gnft", now, base="recommended")
out["defense_details"] = {
    **row["defense_details"],
    "latent": {**row["defense_details"]["latent"], "recalibration_skipped": skipped},
}
out["checkpoint"] = str(target.with_suffix(".safetensors"))
out["derived"] = {
    "from": str(cell),
    "by": "docs/experiments/latent_recalibrate/derive_conv_cell.py",
    "why": f"{skipped}: the radius is not set again, so the run is the previous Recommended's",
    **({"earlier": row["derived"]} if "derived" in row else {}),
}
target.write_text(json.dumps(out, indent=2) + "\n")
shutil.copyfile(cell.with_suffix(".safetensors"), target.with_suffix(".safetensors"))
print(target, skipped)
