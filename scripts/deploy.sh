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
# scripts/rollback.sh.
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

for f in "${targets[@]}"; do
  conf=$(python3 scripts/functions.py conf "$f") || die "cannot read $f's configuration"
  eval "$conf"
  name="stories-$ENV_NAME-$f"
  echo "== $f -> $name"
  [ "${SKIP_BUILD:-0}" = 1 ] || run cargo lambda build --release --arm64 --locked -p "$f"
  # Values go through a private file, never the command line or the log.
  envfile=$(mktemp); chmod 600 "$envfile"
  for v in $REQUIRED $OPTIONAL; do
    if [ -n "${!v:-}" ]; then printf '%s=%s\n' "$v" "${!v}" >> "$envfile"; fi
  done
  [ "$DRY_RUN" = 1 ] && printf '  (environment file with: %s)\n' "$(cut -d= -f1 "$envfile" | tr '\n' ' ')"
  run cargo lambda deploy "$name" --binary-name "$f" --iam-role "${LAMBDA_ROLE_ARN:-\$LAMBDA_ROLE_ARN}" \
    --memory "$MEMORY" --timeout "$TIMEOUT" --env-file "$envfile" --tag project=stories-from-the-sun
  rm -f "$envfile"
  if [ "$DRY_RUN" = 1 ]; then
    run aws lambda publish-version --function-name "$name"
    run aws lambda update-alias --function-name "$name" --name live --function-version '<published version>'
    if [ "$KIND" = http ]; then
      run aws lambda create-function-url-config --function-name "$name" --qualifier live --auth-type NONE
    fi
    continue
  fi
  version=$(aws lambda publish-version --function-name "$name" --query Version --output text)
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
