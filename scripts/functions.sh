# The functions, read from functions/ by scripts/functions.py (the one list):
# FUNCTIONS (every kind) and HTTP_FUNCTIONS (those behind a function URL).
all=$(python3 "$ROOT/scripts/functions.py" names) || die "cannot read functions/ (scripts/functions.py)"
http=$(python3 "$ROOT/scripts/functions.py" names --kind http) || die "cannot read functions/"
mapfile -t FUNCTIONS <<<"$all"
mapfile -t HTTP_FUNCTIONS <<<"$http"
unset all http
