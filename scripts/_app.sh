# Sourced by the scripts that call `flwr run`. stage_app DIR copies what the Flower App is made of
# (pyproject.toml, fedsec/, scenarios/) into DIR: `flwr run .` would first walk every file of the
# checkout, .venv included (about 80,000 files, 10-25 s), to keep only these.
stage_app() {
  mkdir -p "$1"
  cp pyproject.toml README.md .gitignore "$1"/
  cp -r fedsec scenarios "$1"/
}
