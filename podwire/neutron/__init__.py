"""The Neutron v2.0 wire format, shared by both ends: the API server
(podwire.api) and its client, the Neutron backend (podwire.backends.neutron).

Apart from api/ so that a backend never imports the API room (and the
server's FastAPI): wire.py maps bodies to and from the model, filters.py
reads query filters."""
