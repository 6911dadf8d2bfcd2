"""Scale-out on the bus: stateless inference workers and the store node's dispatcher."""
