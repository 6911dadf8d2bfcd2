"""Search as one capability: the service (by a vector, by a sentence over both collections),
its thin handlers, and the one conversion of the API's filter into the store's."""
