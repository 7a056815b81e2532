using System.Threading.Channels;

namespace VptSharp.Data;

/// <summary>A batch of preprocessed images (NCHW float32, flattened) and their labels.</summary>
public sealed record Batch(float[] Images, long[] Labels, int Count, int[] Indices);

/// <summary>
/// Decodes and augments on background threads, a few batches ahead of the model. Order and augmentation are
/// deterministic in (seed, epoch, sample): a resumed run sees exactly the batches an uninterrupted one would.
/// </summary>
public sealed class BatchLoader(ImageDataset dataset, ImageTransform transform, int batchSize, bool shuffle, int seed,
    int workers = 2, int prefetch = 3, bool dropLast = false)
{
    public ImageDataset Dataset { get; } = dataset;
    public int BatchSize { get; } = batchSize;
    public int BatchesPerEpoch => dropLast ? Dataset.Count / BatchSize : (Dataset.Count + BatchSize - 1) / BatchSize;

    public int[] Order(int epoch)
    {
        var idx = Enumerable.Range(0, Dataset.Count).ToArray();
        if (shuffle) new Random(StableSeed.Of(seed, epoch, 0x5eed)).Shuffle(idx);
        return idx;
    }

    public IEnumerable<Batch> Epoch(int epoch, CancellationToken ct = default)
    {
        var order = Order(epoch);
        int batches = BatchesPerEpoch;
        var channel = Channel.CreateBounded<Batch>(new BoundedChannelOptions(Math.Max(1, prefetch)) { SingleWriter = true, SingleReader = true });
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var producer = Task.Run(async () =>
        {
            try
            {
                for (int b = 0; b < batches && !cts.IsCancellationRequested; b++)
                {
                    int start = b * BatchSize, n = Math.Min(BatchSize, order.Length - start);
                    var batch = MakeBatch(order.AsSpan(start, n).ToArray(), epoch);
                    await channel.Writer.WriteAsync(batch, cts.Token);
                }
                channel.Writer.TryComplete();
            }
            catch (Exception e) { channel.Writer.TryComplete(e); }
        });
        try
        {
            while (true)
            {
                Batch? next;
                try
                {
                    if (!channel.Reader.WaitToReadAsync(ct).AsTask().GetAwaiter().GetResult()) break;
                    if (!channel.Reader.TryRead(out next)) continue;
                }
                catch (AggregateException e) when (e.InnerException is not null) { throw e.InnerException; }
                yield return next;
            }
        }
        finally
        {
            cts.Cancel();
            try { producer.Wait(); } catch { /* cancelled */ }
        }
    }

    public Batch MakeBatch(int[] indices, int epoch)
    {
        int len = transform.OutputLength;
        var images = new float[indices.Length * len];
        var labels = new long[indices.Length];
        Parallel.For(0, indices.Length, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, workers) }, i =>
        {
            int idx = indices[i];
            var rng = new Random(StableSeed.Of(seed, epoch, idx));
            transform.Apply(Dataset.Load(idx), rng, images.AsSpan(i * len, len));
            labels[i] = Dataset.LabelOf(idx);
        });
        return new Batch(images, labels, indices.Length, indices);
    }
}
