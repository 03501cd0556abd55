"""Services: the appliance's rules, independent of HTTP.  Resources in ``appliance.api`` and the
``medsign`` command line call them; they talk to storage and custody, never to Falcon."""
