CREATE TABLE accounts (
    id bigserial PRIMARY KEY,
    email text NOT NULL,
    balance int NOT NULL DEFAULT 0
);
CREATE INDEX accounts_email_idx ON accounts (email);
