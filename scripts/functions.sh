# The nine functions, in the order the contract lists them.
FUNCTIONS=(
  create-family create-invite redeem-invite
  get-signed-upload-url finalize-recording get-signed-playback-url
  create-checkout-session create-portal-session stripe-webhook
)
