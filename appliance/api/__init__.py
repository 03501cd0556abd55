"""The HTTP layer: Falcon resources, middleware and error mapping.  Resources only translate
between HTTP and the services; every rule about who may do what lives in ``access``."""
