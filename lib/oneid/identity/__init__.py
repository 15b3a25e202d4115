"""Identity: identifier graph, hub guard, connected components, stable OneIDs."""
