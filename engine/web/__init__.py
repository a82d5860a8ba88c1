"""Server-rendered pages for people: incidents, one incident, rules, deliveries, sign-in."""
