# Shared by the bench scripts (sourced inside their heavy-lock shell): build, log with the load average, strip colours.
build_vpt() { dotnet build -c Release src/VptSharp.Cli -v q -nologo >/dev/null && echo src/VptSharp.Cli/bin/Release/net10.0/linux-x64/vpt; }
build_peer() { dotnet build -c Release bench/MlNetPeer -v q -nologo -p:NoWarn=NU1603 >/dev/null && echo bench/MlNetPeer/bin/Release/net10.0/linux-x64/mlnet-peer; }
log() { echo "$(date -u +%H:%M:%S) load $(cut -d" " -f1-3 /proc/loadavg): $*" | tee -a "$OUT/run.log"; }
plain() { sed "s/\x1b\[[0-9;]*m//g" | grep -v "^\s*$" || true; }
