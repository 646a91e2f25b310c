@echo off
rem Install bkm-bridge @VERSION@ from this bundle (runs install.ps1). Run as administrator.
powershell -NoProfile -ExecutionPolicy Bypass -File "%~dp0install.ps1" %*
exit /b %ERRORLEVEL%
