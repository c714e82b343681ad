-- The B2B shop: two services, one PostgreSQL database (each service owns its tables).
--
--   customer service: customers (credit_limit, credit_reserved)
--   order service:    orders
--   both:             outbox (events written in the same transaction as the change)
--
-- Old row images (REPLICA IDENTITY FULL) let the mapper see what changed.

CREATE TABLE customers (                      -- owned by the customer service
    id              int PRIMARY KEY,
    name            text NOT NULL,
    credit_limit    numeric(12,2) NOT NULL,
    credit_reserved numeric(12,2) NOT NULL DEFAULT 0
);
ALTER TABLE customers REPLICA IDENTITY FULL;

CREATE TABLE orders (                         -- owned by the order service
    id          serial PRIMARY KEY,
    customer_id int NOT NULL,                 -- no foreign key: another service's table
    status      text NOT NULL DEFAULT 'pending',   -- pending | approved | rejected
    amount      numeric(12,2) NOT NULL,
    note        text
);
ALTER TABLE orders REPLICA IDENTITY FULL;

-- The transactional outbox, in the columns the built-in `outbox` mapper expects.
CREATE TABLE outbox (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),   -- becomes cdc-event-id
    aggregate_type text NOT NULL,             -- topic: outbox.event.<aggregate_type>
    aggregate_id   text NOT NULL,             -- Kafka key
    type           text NOT NULL,             -- e.g. OrderPlaced
    payload        jsonb NOT NULL,            -- the message value
    headers        jsonb NOT NULL DEFAULT '{}'
);

INSERT INTO customers (id, name, credit_limit) VALUES
    (1, 'Acme GmbH', 1000.00),
    (2, 'Globex Ltd', 200.00);
