-- Orders placed through POST /orders.
CREATE TABLE IF NOT EXISTS orders (
    id         bigserial PRIMARY KEY,
    product_id bigint NOT NULL REFERENCES products (id),
    quantity   integer NOT NULL CHECK (quantity > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS orders_product_id_idx ON orders (product_id);
