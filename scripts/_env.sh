# Sourced by the scripts: loopback-only Ray, no dashboard, no telemetry (docs/security.md).
export RAY_USAGE_STATS_ENABLED=0
export FLWR_TELEMETRY_ENABLED=0
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
export FLWR_DISABLE_UPDATE_CHECK=1
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
export RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO=0
