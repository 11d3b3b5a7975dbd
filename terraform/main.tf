# Cloudflare in front of the origin: the origin's proxied DNS record, the analysts' hostname
# (whose route to the Worker wrangler.toml owns: `wrangler deploy` publishes it with the
# Worker), cache rules, tiered cache, and an API token that can only purge this zone's cache,
# for the origin's Cloudflare purge provider (CLOUDFLARE_API_TOKEN of deploy/k8s/origin.yaml's
# secret).

locals {
  worker_name = "forecastin-edge-${var.environment}"
  # Analysts' hostname, as routed in wrangler.toml.
  public_host = var.environment == "production" ? var.zone_name : "staging.${var.zone_name}"
  # The origin's own hostname, which the Worker forwards misses to (ORIGIN_URL in wrangler.toml).
  origin_host = var.environment == "production" ? "origin.${var.zone_name}" : "origin-staging.${var.zone_name}"
}

resource "cloudflare_dns_record" "origin" {
  zone_id = var.zone_id
  name    = local.origin_host
  type    = "CNAME"
  content = var.origin_target
  proxied = true
  ttl     = 1
  comment = "Forecastin origin (${var.environment}); the edge Worker forwards misses here"
}

resource "cloudflare_dns_record" "public" {
  zone_id = var.zone_id
  name    = local.public_host
  type    = "CNAME"
  content = local.origin_host
  proxied = true
  ttl     = 1
  comment = "Forecastin for analysts (${var.environment}); served by the Worker route"
}

# The Worker is the shared cache for the API (it honours the origin's Cache-Control and purges
# by tag). The zone's own cache sits behind it for the origin's fetches: the origin's immutable
# static assets are kept for a long time, everything else follows the origin's headers.
resource "cloudflare_ruleset" "cache" {
  zone_id     = var.zone_id
  name        = "Forecastin cache rules"
  description = "Static assets for a year; API responses as the origin's Cache-Control says"
  kind        = "zone"
  phase       = "http_request_cache_settings"

  rules = [
    {
      ref         = "forecastin_static_assets"
      description = "Fingerprinted static assets: immutable"
      expression  = "(http.host eq \"${local.origin_host}\" and starts_with(http.request.uri.path, \"/static/\"))"
      action      = "set_cache_settings"
      action_parameters = {
        cache = true
        edge_ttl = {
          mode    = "override_origin"
          default = var.static_asset_ttl_seconds
        }
        browser_ttl = {
          mode = "respect_origin"
        }
      }
    },
    {
      ref         = "forecastin_api"
      description = "API responses: cacheable as the origin says (s-maxage, stale-while-revalidate, stale-if-error)"
      expression  = "(http.host eq \"${local.origin_host}\" and starts_with(http.request.uri.path, \"/api/\"))"
      action      = "set_cache_settings"
      action_parameters = {
        cache = true
        edge_ttl = {
          mode = "respect_origin"
        }
        respect_strong_etags = true
      }
    },
    {
      ref         = "forecastin_admin_bypass"
      description = "Admin, metrics, health and websocket traffic is never cached (the origin serves the first three on its admin port only)"
      expression  = "(http.host eq \"${local.origin_host}\" and (starts_with(http.request.uri.path, \"/admin/\") or http.request.uri.path in {\"/metrics\" \"/healthz\" \"/readyz\" \"/ws\"}))"
      action      = "set_cache_settings"
      action_parameters = {
        cache = false
      }
    },
  ]
}

# Cloudflare to the origin: TLS, the origin's certificate verified (Full (strict)). The origin
# presents a Cloudflare Origin CA certificate, made here from a key that never leaves the
# state; outputs origin_certificate and origin_private_key go into the Kubernetes TLS Secret
# forecastin-origin-tls (deploy/k8s/origin.yaml).
resource "cloudflare_zone_setting" "ssl" {
  zone_id    = var.zone_id
  setting_id = "ssl"
  value      = "strict"
}

resource "tls_private_key" "origin" {
  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_cert_request" "origin" {
  private_key_pem = tls_private_key.origin.private_key_pem
  subject {
    common_name = local.origin_host
  }
}

resource "cloudflare_origin_ca_certificate" "origin" {
  csr                = tls_cert_request.origin.cert_request_pem
  hostnames          = [local.origin_host]
  request_type       = "origin-ecc"
  requested_validity = 365
}

resource "cloudflare_tiered_cache" "zone" {
  zone_id = var.zone_id
  value   = "on"
}

# 103 Early Hints: the Workers runtime neither surfaces an origin's interim responses nor lets a
# Worker send one; Cloudflare sends them itself from the `Link` headers of cached responses,
# which the edge passes on.
resource "cloudflare_zone_setting" "early_hints" {
  zone_id    = var.zone_id
  setting_id = "early_hints"
  value      = "on"
}

data "cloudflare_api_token_permission_groups_list" "cache_purge" {
  name  = "Cache Purge"
  scope = "com.cloudflare.api.account.zone"
}

resource "cloudflare_api_token" "purge" {
  name = "forecastin-origin-purge-${var.environment}"
  policies = [
    {
      effect            = "allow"
      permission_groups = [{ id = data.cloudflare_api_token_permission_groups_list.cache_purge.result[0].id }]
      # A JSON string since provider 5.13 (policies became a set, compared by value).
      resources = jsonencode({
        "com.cloudflare.api.account.zone.${var.zone_id}" = "*"
      })
    },
  ]
}
