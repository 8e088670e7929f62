#!/usr/bin/env bash
# Deploys functions to an environment, each on its own:
#   scripts/deploy.sh ENV FUNCTION...      e.g. scripts/deploy.sh staging create-family
#   scripts/deploy.sh ENV --all
#   scripts/deploy.sh ENV ... --dry-run    print exactly what would be done, do nothing
# Each function is built for arm64, its code and configuration (its Cargo.toml's
# [package.metadata.stories] and [package.metadata.lambda.deploy], read through
# scripts/functions.py) uploaded with cargo lambda deploy, a new version published, and
# its `live` alias moved to it; an HTTP function's URL (auth NONE: JWTs and Stripe
# signatures are checked in code) points at the alias. A rollback moves the alias back:
# scripts/rollback.sh. Each function also gets its share of the connection budget
# (reserved concurrency and DATABASE_POOL_SIZE, from its Cargo.toml; the deploy stops
# before anything when the account would keep fewer than AWS's minimum of 100
# unreserved), its JSON logs in the stack's log group /stories/ENV/NAME (deploy/api.yaml:
# 30 days) once the stack made it, and a version described by the git commit it was
# built from (REVISION, default the checkout's HEAD).
# With ARTIFACTS=DIR (what scripts/build.sh packed, as CI uploads it) nothing is built:
# each function's NAME.zip is checked against DIR/SHA256SUMS, refused on any mismatch,
# and deployed as it is; the revision is DIR/REVISION.
# Needs AWS credentials and AWS_REGION, LAMBDA_ROLE_ARN, and each function's REQUIRED
# variables (values from the environment's secrets). cargo-lambda, zig and the AWS CLI
# come from PyPI, pinned with their hashes in tools/deploy.txt.
source "$(dirname "$0")/lib.sh"
source "$ROOT/scripts/functions.sh"
cd "$ROOT"

usage="usage: scripts/deploy.sh ENV (FUNCTION...|--all) [--dry-run]"
ENV_NAME="${1:-}"; [ -n "$ENV_NAME" ] || die "$usage"; shift
case "$ENV_NAME" in staging|production) ;; *) die "ENV must be staging or production ($usage)";; esac
DRY_RUN=0; targets=()
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    --all) targets=("${FUNCTIONS[@]}") ;;
    *) [ -f "functions/$arg/Cargo.toml" ] || die "no function named $arg (see functions/)"; targets+=("$arg") ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || die "$usage"

# Everything missing is named before anything is done.
missing=()
if [ "$DRY_RUN" = 0 ]; then
  [ -n "${AWS_REGION:-}" ] || missing+=("variable AWS_REGION")
  if [ -z "${AWS_ACCESS_KEY_ID:-}" ] && [ -z "${AWS_PROFILE:-}" ] && [ -z "${AWS_WEB_IDENTITY_TOKEN_FILE:-}" ]; then
    missing+=("AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or a web identity token)")
  fi
  [ -n "${LAMBDA_ROLE_ARN:-}" ] || missing+=("variable LAMBDA_ROLE_ARN (the functions' execution role)")
  for f in "${targets[@]}"; do
    conf=$(python3 scripts/functions.py conf "$f") || die "cannot read $f's configuration"
    eval "$conf"
    for v in $REQUIRED; do [ -n "${!v:-}" ] || missing+=("variable $v (for $f)"); done
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  printf 'error: cannot deploy, missing:\n' >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi
[ "$DRY_RUN" = 1 ] || use_tools deploy

run() {
  if [ "$DRY_RUN" = 1 ]; then printf '+ %s\n' "$*"; else "$@"; fi
}
if [ -n "${ARTIFACTS:-}" ]; then
  [ -f "$ARTIFACTS/SHA256SUMS" ] && [ -f "$ARTIFACTS/REVISION" ] \
    || die "$ARTIFACTS is not a package of scripts/build.sh (no SHA256SUMS or REVISION)"
  REVISION=$(cat "$ARTIFACTS/REVISION")
fi
REVISION="${REVISION:-$(git rev-parse HEAD)}"

# The function's binary from the package, after its zip's SHA-256 matched.
unpack() {
  local sum
  sum=$(grep -E "^[0-9a-f]{64}  $1\.zip\$" "$ARTIFACTS/SHA256SUMS" || true)
  [ -n "$sum" ] || die "$1.zip is not in $ARTIFACTS/SHA256SUMS: not what CI built"
  (cd "$ARTIFACTS" && sha256sum --check --quiet --strict <<<"$sum") \
    || die "$1.zip does not match its SHA-256 in $ARTIFACTS/SHA256SUMS: not deployed"
  mkdir -p "$CARGO_TARGET_DIR/lambda/$1"
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("bootstrap", sys.argv[2])' \
    "$ARTIFACTS/$1.zip" "$CARGO_TARGET_DIR/lambda/$1"
  chmod 755 "$CARGO_TARGET_DIR/lambda/$1/bootstrap"
}
# AWS keeps at least this many concurrent executions unreserved in an account.
MIN_UNRESERVED=100

# Fails before anything changes when reserving CONCURRENCY for function $1 would leave
# the account fewer than MIN_UNRESERVED unreserved executions. ACCOUNT_UNRESERVED
# stands in for the account's figure where there is no account (the emulator).
check_concurrency() {
  local unreserved current after
  unreserved="${ACCOUNT_UNRESERVED:-$(aws lambda get-account-settings \
    --query AccountLimit.UnreservedConcurrentExecutions --output text)}" \
    || die "cannot read the account's concurrency (lambda:GetAccountSettings)"
  current=$(aws lambda get-function-concurrency --function-name "$1" \
    --query ReservedConcurrentExecutions --output text 2>/dev/null || true)
  [[ "$current" =~ ^[0-9]+$ ]] || current=0
  after=$((unreserved + current - CONCURRENCY))
  [ "$after" -ge "$MIN_UNRESERVED" ] || die "reserving $CONCURRENCY executions for $1 would leave the account $after unreserved, below AWS's minimum of $MIN_UNRESERVED (a new account may have 10 in all: ask AWS Support for more, or lower concurrency in its Cargo.toml); nothing was changed"
}

for f in "${targets[@]}"; do
  conf=$(python3 scripts/functions.py conf "$f") || die "cannot read $f's configuration"
  eval "$conf"
  name="stories-$ENV_NAME-$f"
  echo "== $f -> $name"
  [ "$DRY_RUN" = 1 ] || check_concurrency "$name"
  if [ -n "${ARTIFACTS:-}" ]; then
    run unpack "$f"
  elif [ "${SKIP_BUILD:-0}" != 1 ]; then
    run cargo lambda build --release --arm64 --locked -p "$f"
  fi
  # Values go through a private file, never the command line or the log.
  envfile=$(mktemp); chmod 600 "$envfile"
  for v in $REQUIRED $OPTIONAL; do
    if [ -n "${!v:-}" ]; then printf '%s=%s\n' "$v" "${!v}" >> "$envfile"; fi
  done
  # Its share of the connection budget, whatever the environment says.
  printf 'DATABASE_POOL_SIZE=%s\n' "$POOL_SIZE" >> "$envfile"
  [ "$DRY_RUN" = 1 ] && printf '  (environment file with: %s)\n' "$(cut -d= -f1 "$envfile" | tr '\n' ' ')"
  run cargo lambda deploy "$name" --binary-name "$f" --iam-role "${LAMBDA_ROLE_ARN:-\$LAMBDA_ROLE_ARN}" \
    --memory "$MEMORY" --timeout "$TIMEOUT" --env-file "$envfile" --tag project=stories-from-the-sun \
    --description "$REVISION"
  rm -f "$envfile"
  logs="/stories/$ENV_NAME/$f"
  if [ "$DRY_RUN" = 1 ]; then
    run aws lambda put-function-concurrency --function-name "$name" --reserved-concurrent-executions "$CONCURRENCY"
    run aws lambda update-function-configuration --function-name "$name" --logging-config "LogFormat=JSON,LogGroup=$logs"
    run aws lambda publish-version --function-name "$name" --description "$REVISION"
    run aws lambda update-alias --function-name "$name" --name live --function-version '<published version>'
    if [ "$KIND" = http ]; then
      run aws lambda create-function-url-config --function-name "$name" --qualifier live --auth-type NONE
    fi
    continue
  fi
  aws lambda put-function-concurrency --function-name "$name" --reserved-concurrent-executions "$CONCURRENCY" >/dev/null
  # JSON logs (the platform's REPORT lines too) into the stack's group, once it exists:
  # on the very first deploy the stack comes after the functions (RUNBOOK "First deploy").
  if [ "$(aws logs describe-log-groups --log-group-name-prefix "$logs" --query "length(logGroups[?logGroupName=='$logs'])" --output text)" = 1 ]; then
    aws lambda wait function-updated --function-name "$name"
    aws lambda update-function-configuration --function-name "$name" \
      --logging-config "LogFormat=JSON,LogGroup=$logs" >/dev/null
    aws lambda wait function-updated --function-name "$name"
  else
    echo "$f: no log group $logs yet (deploy/api.yaml makes it): logs go to Lambda's default group until the next deploy"
  fi
  version=$(aws lambda publish-version --function-name "$name" --description "$REVISION" --query Version --output text)
  previous=$(aws lambda get-alias --function-name "$name" --name live --query FunctionVersion --output text 2>/dev/null || true)
  if [ -n "$previous" ]; then
    aws lambda update-alias --function-name "$name" --name live --function-version "$version" >/dev/null
  else
    aws lambda create-alias --function-name "$name" --name live --function-version "$version" >/dev/null
  fi
  if [ "$KIND" != http ]; then
    echo "$f: version $version live (was ${previous:-none}), $KIND: no function URL"
    continue
  fi
  if ! aws lambda get-function-url-config --function-name "$name" --qualifier live >/dev/null 2>&1; then
    aws lambda create-function-url-config --function-name "$name" --qualifier live --auth-type NONE >/dev/null
    aws lambda add-permission --function-name "$name" --qualifier live --statement-id public-function-url \
      --action lambda:InvokeFunctionUrl --principal '*' --function-url-auth-type NONE >/dev/null
  fi
  url=$(aws lambda get-function-url-config --function-name "$name" --qualifier live --query FunctionUrl --output text)
  echo "$f: version $version live (was ${previous:-none}) at $url"
done
