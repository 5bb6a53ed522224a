"""Tests of the local gateway, `asya dev` and the web page."""
