#!/usr/bin/env bash
# Helpers shared by the cluster tests (sourced): installing Debian packages, building vpt, bounded waits.

step() { echo; echo "== $* ($(date -u +%H:%M:%S), $(uptime | sed 's/.*load average: /load /'))"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# need_packages BINARY:PACKAGE... — apt-get installs the packages whose binary (a name on PATH or in /usr/sbin, or an
# absolute path) is missing.
need_packages() {
  local missing=() pair
  for pair in "$@"; do
    case ${pair%%:*} in
      /*) [ -x "${pair%%:*}" ] || missing+=("${pair#*:}") ;;
      *) command -v "${pair%%:*}" > /dev/null || [ -x "/usr/sbin/${pair%%:*}" ] || missing+=("${pair#*:}") ;;
    esac
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || fail "needs root to install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${missing[@]}" > /dev/null
}

# build_vpt — builds the CLI (Release) once and sets VPT to the command that runs it.
build_vpt() {
  local dll="$root/src/VptSharp.Cli/bin/Release/net10.0/linux-x64/vpt.dll"
  dotnet build -c Release "$root/src/VptSharp.Cli" -v q -nologo > /dev/null || fail "dotnet build failed"
  [ -f "$dll" ] || fail "$dll missing after the build"
  VPT="dotnet $dll"
}

# wait_for SECONDS WHAT COMMAND... — polls COMMAND every 0.2 s until it succeeds; fails after SECONDS.
wait_for() {
  local limit=$1 what=$2 end; shift 2
  end=$((SECONDS + limit))
  until "$@"; do
    [ $SECONDS -lt $end ] || fail "timed out after ${limit}s waiting until $what"
    sleep 0.2
  done
}
