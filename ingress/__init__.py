"""The ingress: webhooks, the web form and read endpoints, in front of Kafka and Postgres."""
