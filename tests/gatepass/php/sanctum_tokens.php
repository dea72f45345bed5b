<?php
// The token side of Laravel Sanctum, written from its documented behaviour
// (HasApiTokens::createToken, PersonalAccessToken::findToken) with
// Laravel's own Str::random, for tests/gatepass/laravel.rs.
//
//   php sanctum_tokens.php issue <prefix> <count>
//       one JSON line per token: the plain text createToken returns (minus
//       "<id>|"), the v2 shape (40 random characters, Sanctum 2.x), and the
//       sha256 Sanctum stores for each
//   php sanctum_tokens.php verify <prefix>
//       reads plain-text tokens (one per line, "<id>|<secret>") on stdin and
//       prints, per line, what Laravel stores and checks for it
require '/usr/share/php/Illuminate/autoload.php';

use Illuminate\Support\Str;

function sanctum_v4_secret(string $prefix): string
{
    $entropy = Str::random(40);
    return sprintf('%s%s%s', $prefix, $entropy, hash('crc32b', $entropy));
}

[$_, $command, $prefix] = $argv + [null, null, ''];
switch ($command) {
    case 'issue':
        $count = (int) ($argv[3] ?? 10);
        for ($i = 0; $i < $count; $i++) {
            $v4 = sanctum_v4_secret($prefix);
            $v2 = Str::random(40);
            echo json_encode([
                'v4' => $v4,
                'v4_sha256' => hash('sha256', $v4),
                'v2' => $v2,
                'v2_sha256' => hash('sha256', $v2),
            ]), "\n";
        }
        break;
    case 'verify':
        while (($line = fgets(STDIN)) !== false) {
            $line = rtrim($line, "\n");
            // findToken: "<id>|<secret>" is found by id, the secret hashed.
            [$id, $secret] = explode('|', $line, 2);
            $body = substr($secret, strlen($prefix));
            $entropy = substr($body, 0, 40);
            echo json_encode([
                'id' => (int) $id,
                'sha256' => hash('sha256', $secret),
                'has_prefix' => str_starts_with($secret, $prefix),
                'checksum_ok' => hash('crc32b', $entropy) === substr($body, 40),
            ]), "\n";
        }
        break;
    default:
        fwrite(STDERR, "usage: sanctum_tokens.php issue|verify <prefix> [count]\n");
        exit(2);
}
