CREATE TABLE IF NOT EXISTS customers (
    id bigserial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text NOT NULL,
    phone text
);

CREATE TABLE IF NOT EXISTS reviews (
    id bigserial PRIMARY KEY,
    customer_email text NOT NULL,
    product_sku text NOT NULL,
    rating int NOT NULL CHECK (rating BETWEEN 1 AND 5),
    body text
);
