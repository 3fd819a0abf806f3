DROP TABLE one_time_tokens;
DROP TABLE mail_outbox;
