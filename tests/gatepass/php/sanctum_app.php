<?php
// A Laravel application's side of Sanctum machine-to-machine tokens, for
// tests/gatepass/sanctum.rs: Laravel's Schema builder and Eloquent (Debian's
// php-laravel-framework), with Sanctum's token logic written here from its
// documented behaviour (HasApiTokens::createToken, PersonalAccessToken::
// findToken and can, Guard's expiry and provider checks) and the seed
// guide's RestrictServiceIp middleware. It is the oracle gatepass's
// decisions are compared with.
//
//   php sanctum_app.php <database url>
//
// then one JSON command per line on stdin, one JSON answer per line on
// stdout ({"error": ...} when a command fails).
namespace App\Models;

require '/usr/share/php/Illuminate/autoload.php';

use Illuminate\Database\Capsule\Manager as Capsule;
use Illuminate\Database\Eloquent\Model;
use Illuminate\Database\Schema\Blueprint;
use Illuminate\Support\Carbon;
use Illuminate\Support\Str;
use Symfony\Component\HttpFoundation\IpUtils;

date_default_timezone_set('UTC');

trait HasApiTokens
{
    public function tokens()
    {
        return $this->morphMany(PersonalAccessToken::class, 'tokenable');
    }

    /// As Sanctum 4's createToken: prefix, 40 random characters, their
    /// crc32b; the sha256 of all of it stored; "<id>|<plain>" handed out.
    /// `v2` is Sanctum 2's shape: 40 random characters, no checksum.
    public function createToken(string $name, ?array $abilities, ?Carbon $expiresAt, string $prefix, bool $v2): array
    {
        if ($v2) {
            $plain = Str::random(40);
        } else {
            $entropy = Str::random(40);
            $plain = $prefix . $entropy . hash('crc32b', $entropy);
        }
        $token = $this->tokens()->create([
            'name' => $name,
            'token' => hash('sha256', $plain),
            'abilities' => $abilities,
            'expires_at' => $expiresAt,
        ]);
        return [$token, $plain];
    }
}

class Service extends Model
{
    use HasApiTokens;

    protected $fillable = ['name', 'description', 'ip_allowlist', 'is_active'];
    protected $casts = ['is_active' => 'boolean'];
}

class User extends Model
{
    use HasApiTokens;

    protected $fillable = ['name'];
}

class PersonalAccessToken extends Model
{
    protected $table = 'personal_access_tokens';
    protected $casts = ['abilities' => 'json', 'last_used_at' => 'datetime', 'expires_at' => 'datetime'];
    protected $fillable = ['name', 'token', 'abilities', 'expires_at'];

    public function tokenable()
    {
        return $this->morphTo('tokenable');
    }

    public static function findToken(string $token): ?self
    {
        if (strpos($token, '|') === false) {
            return static::where('token', hash('sha256', $token))->first();
        }
        [$id, $secret] = explode('|', $token, 2);
        $instance = static::find($id);
        return $instance && hash_equals($instance->token, hash('sha256', $secret)) ? $instance : null;
    }

    public function can(string $ability): bool
    {
        return in_array('*', $this->abilities) || array_key_exists($ability, array_flip($this->abilities));
    }
}

function connect(string $url): void
{
    $capsule = new Capsule();
    if (str_starts_with($url, 'sqlite:')) {
        $path = preg_replace('#^sqlite:(//)?#', '', $url);
        $capsule->addConnection(['driver' => 'sqlite', 'database' => $path, 'foreign_key_constraints' => true]);
    } else {
        $parts = parse_url($url);
        $driver = ['postgres' => 'pgsql', 'postgresql' => 'pgsql', 'mysql' => 'mysql', 'mariadb' => 'mysql'][$parts['scheme']];
        $capsule->addConnection([
            'driver' => $driver,
            'host' => $parts['host'],
            'port' => $parts['port'] ?? null,
            'database' => ltrim($parts['path'], '/'),
            'username' => $parts['user'] ?? 'root',
            'password' => $parts['pass'] ?? '',
            'charset' => $driver === 'mysql' ? 'utf8mb4' : 'utf8',
            'collation' => $driver === 'mysql' ? 'utf8mb4_unicode_ci' : null,
            'timezone' => '+00:00',
        ]);
    }
    $capsule->setAsGlobal();
    $capsule->bootEloquent();
}

/// Sanctum's migration, the guide's services table, and a users table.
function schema(): array
{
    $schema = Capsule::schema();
    $schema->create('personal_access_tokens', function (Blueprint $table) {
        $table->id();
        $table->morphs('tokenable');
        $table->string('name');
        $table->string('token', 64)->unique();
        $table->text('abilities')->nullable();
        $table->timestamp('last_used_at')->nullable();
        $table->timestamp('expires_at')->nullable()->index();
        $table->timestamps();
    });
    $schema->create('services', function (Blueprint $table) {
        $table->id();
        $table->string('name')->unique();
        $table->text('description')->nullable();
        $table->string('ip_allowlist')->nullable();
        $table->boolean('is_active')->default(true);
        $table->timestamps();
    });
    $schema->create('users', function (Blueprint $table) {
        $table->id();
        $table->string('name');
        $table->timestamps();
    });
    return [];
}

/// What the application answers a request with: Sanctum's guard
/// (`auth:sanctum`), the guide's RestrictServiceIp middleware, then
/// `tokenCan($ability)` in the route. 401, 403, 500 (Laravel failing: a
/// NULL abilities column makes `can` throw) or 200 with the service.
function decide(string $bearer, string $ip, ?string $ability, ?int $expiration): array
{
    // Guard::getTokenFromRequest and isValidBearerToken.
    if ($bearer === '') {
        return ['status' => 401];
    }
    if (str_contains($bearer, '|')) {
        [$id, $secret] = explode('|', $bearer, 2);
        if (!ctype_digit($id) || empty($secret)) {
            return ['status' => 401];
        }
    }
    $token = PersonalAccessToken::findToken($bearer);
    // Guard::isValidAccessToken and supportsTokens: only a Service counts.
    $valid = $token
        && (!$expiration || $token->created_at->gt(now()->subMinutes($expiration)))
        && (!$token->expires_at || !$token->expires_at->isPast())
        && $token->tokenable instanceof Service;
    if (!$valid) {
        return ['status' => 401];
    }
    $service = $token->tokenable;
    // RestrictServiceIp.
    if (!$service->is_active) {
        return ['status' => 403];
    }
    if (!empty($service->ip_allowlist)) {
        $allowed = array_map('trim', explode(',', $service->ip_allowlist));
        if (!IpUtils::checkIp($ip, $allowed)) {
            return ['status' => 403];
        }
    }
    if ($ability !== null) {
        try {
            if (!$token->can($ability)) {
                return ['status' => 403];
            }
        } catch (\TypeError $e) {
            return ['status' => 500];
        }
    }
    return ['status' => 200, 'service' => $service->name, 'token_id' => $token->id];
}

function run(array $command): array
{
    switch ($command['op']) {
        case 'schema':
            return schema();
        case 'service':
            $service = Service::create([
                'name' => $command['name'],
                'description' => $command['description'] ?? null,
                'ip_allowlist' => $command['ip_allowlist'] ?? null,
                'is_active' => $command['is_active'] ?? true,
            ]);
            return ['id' => $service->id];
        case 'user':
            return ['id' => User::create(['name' => $command['name']])->id];
        case 'token':
            $owner = $command['owner'] === 'user' ? User::find($command['owner_id']) : Service::find($command['owner_id']);
            $expires = isset($command['expires_in_minutes']) ? now()->addMinutes($command['expires_in_minutes']) : null;
            [$token, $plain] = $owner->createToken(
                $command['name'] ?? 'test',
                array_key_exists('abilities', $command) ? $command['abilities'] : ['*'],
                $expires,
                $command['prefix'] ?? '',
                ($command['shape'] ?? 'v4') === 'v2'
            );
            return ['id' => $token->id, 'plain' => $token->id . '|' . $plain, 'secret' => $plain];
        case 'age':
            PersonalAccessToken::where('id', $command['id'])
                ->update(['created_at' => now()->subMinutes($command['minutes'])]);
            return [];
        case 'used':
            // What Sanctum's guard does on each authenticated request.
            $token = PersonalAccessToken::find($command['id']);
            $token->forceFill(['last_used_at' => now()])->save();
            return [];
        case 'delete':
            PersonalAccessToken::find($command['id'])->delete();
            return [];
        case 'abilities':
            $token = PersonalAccessToken::find($command['id']);
            $token->abilities = $command['abilities'];
            $token->save();
            return [];
        case 'service_update':
            $service = Service::find($command['id']);
            foreach (['is_active', 'ip_allowlist', 'name', 'description'] as $field) {
                if (array_key_exists($field, $command)) {
                    $service->$field = $command[$field];
                }
            }
            $service->save();
            return [];
        case 'decide':
            return decide($command['token'], $command['ip'], $command['ability'] ?? null, $command['expiration'] ?? null);
        case 'can':
            $token = PersonalAccessToken::findToken($command['token']);
            return ['abilities' => array_map(fn ($a) => $token->can($a), $command['abilities'])];
        case 'raw':
            return ['rows' => array_map(fn ($row) => (array) $row, Capsule::select($command['sql']))];
        default:
            throw new \InvalidArgumentException('unknown op ' . $command['op']);
    }
}

connect($argv[1]);
while (($line = fgets(STDIN)) !== false) {
    try {
        $answer = run(json_decode($line, true, 512, JSON_THROW_ON_ERROR));
    } catch (\Throwable $e) {
        $answer = ['error' => get_class($e) . ': ' . $e->getMessage()];
    }
    echo json_encode((object) $answer), "\n";
    flush();
}
