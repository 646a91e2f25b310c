# Install bkm-bridge @VERSION@ from this bundle only: no index, no network.
# Run in an elevated PowerShell (Run as administrator), in the unpacked bundle's folder:
#     powershell -ExecutionPolicy Bypass -File install.ps1 [-PythonVersion 3.12]
# Installs into the all-users Python (the Windows service needs it; see service/README.md).
# Run it again to upgrade. Bundle built for @TARGET@, Python @PYTHONS@.
param([string]$PythonVersion = "")

$ErrorActionPreference = "Stop"
$here = Split-Path -Parent $MyInvocation.MyCommand.Path
$wheels = Join-Path $here "wheels"
$supported = "@PYTHONS@".Split(" ")

if (-not (Get-Command py -ErrorAction SilentlyContinue)) {
    Write-Error "The Python launcher 'py' was not found. Install Python $($supported[-1]) (64-bit) from python.org with 'Install for all users', then run this again."
}
if (-not $PythonVersion) {
    foreach ($candidate in ($supported | Sort-Object -Descending)) {
        & py "-$candidate" -c "import sys" 2>$null
        if ($LASTEXITCODE -eq 0) { $PythonVersion = $candidate; break }
    }
}
if (-not $PythonVersion -or -not ($supported -contains $PythonVersion)) {
    Write-Error "This bundle is for Python $($supported -join ', ') (64-bit); none of them was found. Install one for all users from python.org."
}

& py "-$PythonVersion" -m pip install --disable-pip-version-check --no-index --find-links "$wheels" --upgrade "bkm-bridge==@VERSION@"
if ($LASTEXITCODE -ne 0) { Write-Error "pip could not install bkm-bridge from $wheels (exit $LASTEXITCODE)." }

$scripts = & py "-$PythonVersion" -c "import sysconfig; print(sysconfig.get_path('scripts'))"
Write-Host ""
Write-Host "bkm-bridge @VERSION@ is installed for Python $PythonVersion."
Write-Host "The command is $scripts\bkm-bridge.exe (on PATH if Python was installed with 'Add to PATH';"
Write-Host "otherwise use: py -$PythonVersion -m bridge ...)."
Write-Host "Next step: bkm-bridge config check --config C:\ProgramData\bkm-bridge\bkm-bridge.toml"
