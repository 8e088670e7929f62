#!/usr/bin/env bash
# Moves a function's `live` alias back: to VERSION, or to the version before the live one.
#   scripts/rollback.sh ENV FUNCTION [VERSION]
# Needs AWS credentials and AWS_REGION (the AWS CLI is pinned in tools/deploy.txt).
source "$(dirname "$0")/lib.sh"
[ $# -ge 2 ] || die "usage: scripts/rollback.sh ENV FUNCTION [VERSION]"
use_tools deploy
need_var AWS_REGION
name="stories-$1-$2"
live=$(aws lambda get-alias --function-name "$name" --name live --query FunctionVersion --output text) \
  || die "$name has no live alias"
target="${3:-}"
if [ -z "$target" ]; then
  target=$(aws lambda list-versions-by-function --function-name "$name" --query 'Versions[].Version' --output text \
    | tr '\t' '\n' | grep -E '^[0-9]+$' | sort -n | awk -v live="$live" '$1 < live' | tail -n 1)
  [ -n "$target" ] || die "$name has no version before $live"
fi
aws lambda update-alias --function-name "$name" --name live --function-version "$target" >/dev/null
echo "$name: live moved from version $live to $target"
