// Package alerts sends quota events (package doc of policy, "Alerts"): a
// customer's use of a plan's quota reaching a threshold, and a forecast that
// it runs out before its period ends. The server shows it every decision;
// it never makes one wait. Events wait in an Outbox and are delivered to
// webhooks as CloudEvents, at least once.
package alerts
