"""Unit tests of gatepass_tools: python3 -m unittest discover -s tools/tests -t tools"""
