# Providers and state. The backend is left to the operator: `terraform init
# -backend-config=backend.hcl` with the bucket/key of their choice (see README.md).
terraform {
  required_version = ">= 1.6.0"

  required_providers {
    cloudflare = {
      source  = "cloudflare/cloudflare"
      version = "= 5.17.0"
    }
    tls = {
      source  = "hashicorp/tls"
      version = "= 4.1.0"
    }
  }

  backend "s3" {}
}

provider "cloudflare" {
  # CLOUDFLARE_API_TOKEN in the environment: a token allowed to edit DNS, Workers routes,
  # cache rules, tiered cache and API tokens of the zone. Never in a file.
}
