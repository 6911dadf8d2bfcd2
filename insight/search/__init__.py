"""Search: ranking of text queries over both vector spaces, and the one conversion of the API's
filter into the store's."""
