# Shared environment for the scripts: a persistent build dir and model cache
# outside the clone, so repeated builds and CI runs are incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/quarry/target}"
export QUARRY_MODELS_DIR="${QUARRY_MODELS_DIR:-$HOME/.cache/quarry/models}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
