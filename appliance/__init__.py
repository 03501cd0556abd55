"""The medsign appliance: configuration, storage, services, REST API, operations and the CLI.

This is the top layer (DESIGN.md section 2): it may import every library package
(``signcore`` and, later, ``keysplit``, ``ca_client``, ``pdfsign``, ``evidence``); none of them
imports it.
"""
