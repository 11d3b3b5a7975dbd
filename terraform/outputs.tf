output "worker_route_pattern" {
  description = "The pattern the Worker serves (must match wrangler.toml's routes for this environment)."
  value       = cloudflare_workers_route.edge.pattern
}

output "origin_hostname" {
  description = "The origin's proxied hostname (ORIGIN_URL of the Worker)."
  value       = cloudflare_dns_record.origin.name
}

output "origin_certificate" {
  description = "The origin's Cloudflare Origin CA certificate (tls.crt of the forecastin-origin-tls Secret)."
  value       = cloudflare_origin_ca_certificate.origin.certificate
}

output "origin_private_key" {
  description = "Its private key (tls.key of the forecastin-origin-tls Secret)."
  value       = tls_private_key.origin.private_key_pem
  sensitive   = true
}

output "purge_token" {
  description = "API token that can only purge this zone's cache: the origin's CLOUDFLARE_API_TOKEN."
  value       = cloudflare_api_token.purge.value
  sensitive   = true
}
