#!/usr/bin/env bash
# Remakes the bundled default models (this folder) from the embedded default data: 10,000 synthetic scenes
# (seed 0, 128 px) ingested into a scratch lake, their ground truth imported, one jobs.train run per model.
# Each manifest.json here records the command that made it, its training data and its held-out metrics.
#
#   models/default/make.sh [SCRATCH_LAKE]       # default /tmp/lakelens-defaults; about 2 h on 2 CPU cores
set -euo pipefail
lake=${1:-/tmp/lakelens-defaults}
cd "$(dirname "$0")/../.."
./build.sh setup
py=.venv/bin/python
scenes=$lake/sources/synth-n10000-seed0
registry=$lake/registry

"$py" -m jobs.synth --out "$scenes" --n 10000 --seed 0
"$py" -m jobs.ingest --lake "$lake" --source "$scenes/images"
"$py" -m jobs.import_dataset scenes --lake "$lake" --dir "$scenes"

train() { "$py" -m jobs.train --lake "$lake" --set "models.registry=$registry" --data scene_truth "$@"; }
train --model classifier --name classifier --label-column labels --size 64 --epochs 10 --batch-size 64
train --model detector --name detector --size 96 --epochs 6 --batch-size 32 --lr 2e-3
train --model segmenter --name segmenter --size 64 --epochs 6 --batch-size 32 --lr 3e-3
train --model captioner --name captioner --size 64 --epochs 24 --batch-size 64 --lr 3e-3
# The embedder's positives are scenes with the same objects (shape, colour, size), whatever their layout; it learns
# that from relayout-rich scenes: 20,000 of seed 5, 40 % of them relayouts, in a lake of their own.
rich=$lake/sources/synth-n20000-seed5-relayouts
"$py" -m jobs.synth --out "$rich" --n 20000 --seed 5 --dup-fraction 0.1 --similar-fraction 0.4
"$py" -m jobs.ingest --lake "$lake/embedder-lake" --source "$rich/images"
"$py" -m jobs.import_dataset scenes --lake "$lake/embedder-lake" --dir "$rich"
"$py" -m jobs.train --lake "$lake/embedder-lake" --set "models.registry=$registry" --data scene_truth \
    --model embedder --name embedder --size 64 --epochs 14 \
    --label-expr "abs(xxhash64(array_sort(arrays_zip(labels, colours, sizes))))"

# The text-image model starts its image tower from that embedder and learns from 6,000 scenes of seed 0, scored on
# 1,000 of seed 1 (a hit: a scene with the caption's objects), in a lake of their own.
text=$lake/text-lake
"$py" -m jobs.synth --out "$text/sources/train-seed0" --n 6000 --seed 0
"$py" -m jobs.synth --out "$text/sources/eval-seed1" --n 1000 --seed 1
"$py" -m jobs.ingest --lake "$text" --source "$text/sources/train-seed0/images"
"$py" -m jobs.ingest --lake "$text" --source "$text/sources/eval-seed1/images"
"$py" -m jobs.import_dataset scenes --lake "$text" --dir "$text/sources/train-seed0" --dir "$text/sources/eval-seed1"
"$py" -m jobs.train --lake "$text" --set "models.registry=$registry" --data scene_truth --model text_image \
    --name text-image --where "source like '%train-seed0'" --eval-where "source like '%eval-seed1'" \
    --holdout-percent 5 --batch-size 128 --lr 2e-3 --negatives hardest --epochs 16 --image-model embedder \
    --match-expr "xxhash64(array_sort(arrays_zip(labels, colours, sizes)))"

# The image-to-image models learn from the images alone: the same 6,000 scenes of seed 0, scored on the 1,000 of seed 1.
train_scenes() {
    "$py" -m jobs.train --lake "$text" --set "models.registry=$registry" --data scene_truth \
        --where "source like '%train-seed0'" --eval-where "source like '%eval-seed1'" "$@"
}
train_scenes --model colouriser_residual --name colouriser --size 64 --epochs 6 --batch-size 64 --lr 3e-3
train_scenes --model autoencoder --name autoencoder --size 64 --dim 64 --epochs 8 --batch-size 64 --lr 2e-3

models=(classifier detector segmenter captioner embedder text-image colouriser autoencoder)
for m in "${models[@]}"; do rm -rf "models/default/$m"; cp -r "$registry/$m" models/default/; done
du -sh models/default
