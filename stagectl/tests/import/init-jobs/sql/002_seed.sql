INSERT INTO items (name) VALUES ('alpha'), ('beta'), ('gamma');
