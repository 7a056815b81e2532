using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using VptSharp.Inference;

namespace VptSharp.Cli;

/// <summary>
/// `vpt serve` as one of several stateless replicas behind a load balancer (Kubernetes Service, nginx upstream):
/// <c>/readyz</c> answers 200 only while the backbone and at least one task are loaded and the replica is not draining
/// (<c>/healthz</c> stays the liveness check), and SIGTERM drains: /readyz turns 503 while requests are still served for
/// <see cref="DrainDelay"/> (time for the balancer to notice), then the listener closes, in-flight requests finish
/// (up to <see cref="ShutdownTimeout"/>), and the process exits 0. A second SIGTERM, or SIGINT, skips the delay.
/// </summary>
internal sealed class ServeReplica
{
    readonly TimeSpan drainDelay, shutdownTimeout;
    volatile bool draining;

    public ServeReplica(TimeSpan drainDelay, TimeSpan shutdownTimeout)
    {
        if (drainDelay < TimeSpan.Zero || drainDelay > TimeSpan.FromHours(1)) throw new ArgumentException($"--drain-seconds {drainDelay.TotalSeconds}: use 0 to 3600");
        if (shutdownTimeout <= TimeSpan.Zero || shutdownTimeout > TimeSpan.FromHours(1)) throw new ArgumentException($"--shutdown-timeout-seconds {shutdownTimeout.TotalSeconds}: use more than 0, up to 3600");
        (this.drainDelay, this.shutdownTimeout) = (drainDelay, shutdownTimeout);
    }

    public TimeSpan DrainDelay => drainDelay;
    public TimeSpan ShutdownTimeout => shutdownTimeout;
    public bool Draining => draining;

    /// <summary>Replaces the console lifetime (which would stop at once on SIGTERM) with the draining one.</summary>
    public void Configure(WebApplicationBuilder builder)
    {
        builder.Services.AddSingleton<IHostLifetime>(sp => new Lifetime(this, sp.GetRequiredService<IHostApplicationLifetime>()));
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = shutdownTimeout);
    }

    public void MapProbes(WebApplication app, TaskStore store) => app.MapGet("/readyz", () =>
    {
        int tasks = store.Tasks.Count;
        if (draining) return Results.Json(new { status = "draining", tasks }, statusCode: 503);
        return tasks == 0 ? Results.Json(new { status = "no tasks loaded", tasks, folder = store.Folder }, statusCode: 503)
                          : Results.Json(new { status = "ready", tasks });
    });

    sealed class Lifetime(ServeReplica replica, IHostApplicationLifetime app) : IHostLifetime, IDisposable
    {
        readonly List<PosixSignalRegistration> registrations = [];

        public Task WaitForStartAsync(CancellationToken cancellationToken)
        {
            registrations.Add(PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnTerm));
            foreach (var s in new[] { PosixSignal.SIGINT, PosixSignal.SIGQUIT })
                registrations.Add(PosixSignalRegistration.Create(s, ctx => { ctx.Cancel = true; Stop("stopping"); }));
            return Task.CompletedTask;
        }

        void OnTerm(PosixSignalContext ctx)
        {
            ctx.Cancel = true; // the host shuts down in order instead of the runtime's default exit
            if (replica.draining) { Stop("second SIGTERM: stopping now"); return; }
            replica.draining = true;
            Console.WriteLine($"SIGTERM: draining (/readyz 503; serving {replica.DrainDelay.TotalSeconds:0.#}s more, then closing the listener and finishing in-flight requests)");
            _ = Task.Delay(replica.DrainDelay).ContinueWith(_ => Stop("drain delay over: closing the listener"), TaskScheduler.Default);
        }

        void Stop(string why)
        {
            replica.draining = true;
            Console.WriteLine(why);
            app.StopApplication();
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public void Dispose() { foreach (var r in registrations) r.Dispose(); }
    }
}
