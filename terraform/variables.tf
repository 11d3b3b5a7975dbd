variable "environment" {
  description = "Which deployment this is: it picks the Worker (forecastin-edge-<environment>) and the hostnames."
  type        = string

  validation {
    condition     = contains(["staging", "production"], var.environment)
    error_message = "environment must be \"staging\" or \"production\", the environments of wrangler.toml."
  }
}

variable "account_id" {
  description = "Cloudflare account that owns the zone and the Worker."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{32}$", var.account_id))
    error_message = "account_id is a 32-character hexadecimal Cloudflare id."
  }
}

variable "zone_id" {
  description = "Cloudflare zone of zone_name."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{32}$", var.zone_id))
    error_message = "zone_id is a 32-character hexadecimal Cloudflare id."
  }
}

variable "zone_name" {
  description = "The zone analysts use (the Worker's routes are on it)."
  type        = string
  default     = "forecastin.example"

  validation {
    condition     = can(regex("^[a-z0-9-]+(\\.[a-z0-9-]+)+$", var.zone_name))
    error_message = "zone_name is a lower-case DNS name such as forecastin.example."
  }
}

variable "origin_target" {
  description = "Where the origin's load balancer answers (a hostname, for a CNAME): the Kubernetes Service of deploy/k8s/origin.yaml."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9.-]+$", var.origin_target))
    error_message = "origin_target is a hostname."
  }
}

variable "static_asset_ttl_seconds" {
  description = "Edge TTL of the origin's fingerprinted static assets (/static/…), which never change under one name."
  type        = number
  default     = 31536000

  validation {
    condition     = var.static_asset_ttl_seconds >= 3600
    error_message = "Fingerprinted assets are immutable: cache them for at least an hour."
  }
}
